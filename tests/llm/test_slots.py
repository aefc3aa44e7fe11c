"""An endpoint's call slots (picaco/llm/slots.py): priority first, then arrival; cancellation loses no slot."""

from __future__ import annotations

import asyncio

import pytest

from picaco.llm.slots import PrioritySlots, priority_of


async def held(slots: PrioritySlots, name: str, priority: int, order: list[str], hold_s: float = 0.01) -> None:
    await slots.acquire(priority)
    order.append(name)
    await asyncio.sleep(hold_s)
    slots.release()


async def test_waiters_are_served_by_priority_then_by_arrival():
    slots, order = PrioritySlots(1), []
    await slots.acquire()
    waiting = [asyncio.create_task(held(slots, name, p, order))
               for name, p in [("judge1", 1), ("judge2", 1), ("target1", 0), ("judge3", 1), ("target2", 0)]]
    await asyncio.sleep(0.01)
    assert order == [] and slots.locked()
    slots.release()
    await asyncio.gather(*waiting)
    assert order == ["target1", "target2", "judge1", "judge2", "judge3"]
    assert not slots.locked()


async def test_a_free_slot_is_taken_at_once_and_never_more_than_the_count_are_held():
    slots, inside, most = PrioritySlots(3), [0], [0]

    async def work(p: int) -> None:
        await slots.acquire(p)
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        await asyncio.sleep(0.005)
        inside[0] -= 1
        slots.release()

    await asyncio.gather(*[work(k % 2) for k in range(20)])
    assert most[0] == 3 and not slots.locked()


async def test_cancelled_waiters_lose_no_slot():
    slots, order = PrioritySlots(1), []
    await slots.acquire()
    gone = asyncio.create_task(slots.acquire(0))
    kept = asyncio.create_task(held(slots, "kept", 1, order))
    await asyncio.sleep(0.01)
    gone.cancel()
    slots.release()
    await kept
    assert order == ["kept"] and not slots.locked()

    # handed the slot, then cancelled before it ran: the slot goes on to the next waiter
    await slots.acquire()
    granted = asyncio.create_task(slots.acquire(0))
    after = asyncio.create_task(held(slots, "after", 1, order))
    await asyncio.sleep(0.01)
    slots.release()  # hands the slot to `granted`
    granted.cancel()
    await asyncio.gather(granted, return_exceptions=True)
    await after
    assert order == ["kept", "after"] and not slots.locked()


def test_sampling_and_proposing_go_before_judging():
    assert priority_of("target") == priority_of("optimizer") < priority_of("judge")


def test_no_slots_is_refused():
    with pytest.raises(ValueError, match="positive"):
        PrioritySlots(0)
