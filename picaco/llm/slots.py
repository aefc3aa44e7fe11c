"""Call slots of one endpoint: a semaphore whose waiters go in order of priority, then of arrival.

The E-step and the M-step's draft share an endpoint's slots (picaco/method/run.py). A reply of the target
or the optimizer is work for the local encoder (its samples are embedded as they arrive, or it leads to
samples that are); a judge's reply is not. Served first come first served, the E-step's judge calls (one per
sample) queued ahead of the draft's sampling calls, and the encoder sat idle for 2-3 s of each iteration
waiting for the draft's first replies (docs/performance.md). The calls are the same
either way, and so are their results; only their order changes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

# roles whose replies feed the encoder: served before the others when calls wait for a slot
FIRST_ROLES = frozenset({"target", "optimizer"})


def priority_of(role: str) -> int:
    return 0 if role in FIRST_ROLES else 1


class PrioritySlots:
    """`value` slots; `acquire(priority)` waits for one, lowest priority first, then in arrival order."""

    def __init__(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"slots need a positive count, not {value}")
        self._free = value
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._arrivals = itertools.count()

    def locked(self) -> bool:
        return self._free == 0

    async def acquire(self, priority: int = 0) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        granted = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._arrivals), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():  # handed a slot, then cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, granted = heapq.heappop(self._waiters)
            if not granted.done():  # a waiter cancelled while it waited is skipped
                granted.set_result(None)  # the slot goes straight to it
                return
        self._free += 1
