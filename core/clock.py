"""Time as a dependency: production reads the wall clock, tests move a fake one by hand."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to; always timezone-aware UTC."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self._waiting: list[tuple[datetime, asyncio.Future[None]]] = []

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 0, **kwargs: float) -> datetime:
        self._now += timedelta(seconds=seconds, **kwargs)
        self._wake()
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when
        self._wake()

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has been moved ``seconds`` on (``advance``/``set``); real time
        plays no part, so a test decides exactly when a delayed step runs."""
        due = self._now + timedelta(seconds=seconds)
        if due <= self._now:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((due, waiter))
        await waiter

    def _wake(self) -> None:
        keep = []
        for due, waiter in self._waiting:
            if waiter.done():
                continue
            if due <= self._now:
                waiter.set_result(None)
            else:
                keep.append((due, waiter))
        self._waiting = keep


async def sleep(clock: Clock, seconds: float) -> None:
    """Wait ``seconds`` on ``clock``: real time for the system clock, moved by hand for a
    ``FakeClock``."""
    own = getattr(clock, "sleep", None)
    if own is not None:
        await own(seconds)
    else:
        await asyncio.sleep(seconds)
