"""Usage by role, and how a request's samples are split into provider calls and their tokens booked."""

from __future__ import annotations

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
