"""FakeClock.sleep: a delayed step runs when the test moves the clock, never by real time."""

from __future__ import annotations

import asyncio

from core.clock import FakeClock, sleep


async def test_sleep_returns_once_the_clock_has_moved_far_enough():
    clock = FakeClock()
    woke: list[float] = []

    async def nap(seconds: float) -> None:
        await sleep(clock, seconds)
        woke.append(seconds)

    tasks = [asyncio.create_task(nap(s)) for s in (3, 10)]
    await asyncio.sleep(0)
    clock.advance(2)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(1)
    await asyncio.sleep(0)
    assert woke == [3]
    clock.set(clock.now().replace(year=2030))
    await asyncio.gather(*tasks)
    assert woke == [3, 10]


async def test_a_zero_sleep_only_yields():
    clock = FakeClock()
    before = clock.now()
    await asyncio.wait_for(sleep(clock, 0), 1)
    assert clock.now() == before
