"""Waking waiters when emulator state changes, without polling.

Every mutation of the emulator is synchronous, so a waiter can check its predicate and pick
up the current event in one step; no notification can slip between the check and the wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Signal:
    """Wakes every coroutine waiting for "something changed".

    State changes are synchronous, so notifying must be too (``asyncio.Condition`` would
    need its lock, i.e. an await, inside every mutation). A waiter checks its predicate and
    takes the current event in one synchronous step, so no notification can slip between.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        event = self._event
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass


async def wait_on(signal: Signal, predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """The predicate's first truthy result, re-checked after each notification."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if result:
            return result
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"emulator: no {what} within {timeout:g}s")
        await signal.wait(remaining)
