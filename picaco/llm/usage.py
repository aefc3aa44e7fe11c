"""Usage by role, and how a request's samples are split into provider calls and their tokens booked."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class RoleUsage:
    requests: int = 0  # client-level requests (chat() or embed() calls)
    calls: int = 0  # provider calls that succeeded (what a provider bills)
    attempts: int = 0  # provider calls tried, including failed ones
    retries: int = 0
    samples_hit: int = 0  # served from the cache
    samples_shared: int = 0  # served by an identical request already in flight
    samples_shared_remote: int = 0  # paid by another worker that held the claim, read from the shared cache
    samples_miss: int = 0  # fetched from the provider
    samples_filtered: int = 0  # fetched, but refused by a content filter (empty, never cached)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_tokens: int = 0
    saved_prompt_tokens: int = 0
    saved_completion_tokens: int = 0
    saved_cost_usd: float = 0.0
    errors: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def add(self, other: RoleUsage) -> None:
        for name, value in other.__dict__.items():
            setattr(self, name, getattr(self, name) + value)


# The books a request is also entered in, besides its client's total: one per `usage_scope` open in the
# asyncio task that makes it (tasks inherit them from the task that starts them). Two steps running at once
# on one client (the E-step and the M-step's draft, picaco/method/run.py) are measured apart this way;
# a window over the client's total would mix them.
_SCOPES: ContextVar[tuple[dict[str, RoleUsage], ...]] = ContextVar("picaco_usage_scopes", default=())


def books(total: dict[str, RoleUsage], role: str) -> list[RoleUsage]:
    """Where a request of `role` is accounted: the client's total, then every open scope."""
    return [total[role], *(scope[role] for scope in _SCOPES.get())]


@contextlib.contextmanager
def usage_scope() -> Iterator[dict[str, RoleUsage]]:
    """Usage by role of the requests made within the block by this task and the tasks it starts."""
    scope: dict[str, RoleUsage] = defaultdict(RoleUsage)
    token = _SCOPES.set((*_SCOPES.get(), scope))
    try:
        yield scope
    finally:
        _SCOPES.reset(token)


def contiguous_runs(indices: list[int]) -> list[list[int]]:
    """[0,1,2,5,6] -> [[0,1,2],[5,6]]: each run is one provider call with seed = base + first index (or
    several, when the endpoint returns fewer samples per call)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def split_evenly(total: int, n: int) -> list[int]:
    q, r = divmod(max(0, total), n)
    return [q + (1 if k < r else 0) for k in range(n)]
