"""Who runs the tickers: on PostgreSQL one process leads, on SQLite the only one does.

The leader holds a session-level ``pg_advisory_lock`` on a connection of its own (not one
from the pool, which would hand it to other work and lose the lock with it). When the
leader dies its connection closes and PostgreSQL releases the lock; a waiting process, which
tries the lock every few seconds, takes over. The leader checks its connection regularly and
steps down the moment it cannot prove it still holds the lock.

Leadership only saves duplicate work. Every job claims its orders with leases and applies
compare-and-set transitions, so two leaders at once (a partition, a slow death) are safe.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

LOCK_CLASS = 0x6E73  # "ns"
LOCK_KEY = zlib.crc32(b"numbershop:scheduler") & 0x7FFFFFFF


class Leadership(Protocol):
    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this process leads (True) or ``stop`` is set (False)."""
        ...

    async def watch(self, stop: asyncio.Event) -> None:
        """Return when leadership is lost or ``stop`` is set."""
        ...

    async def release(self) -> None: ...


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


class SoleLeader:
    """SQLite: one machine, one shop; every scheduler process runs the tickers (leases
    still keep two of them from doing the same work)."""

    async def acquire(self, stop: asyncio.Event) -> bool:
        return not stop.is_set()

    async def watch(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def release(self) -> None:
        return None


class AdvisoryLeader:
    def __init__(self, url: str, *, key: int = LOCK_KEY, retry_s: float = 2.0, check_s: float = 5.0) -> None:
        self.url = url
        self.key = key
        self.retry_s = retry_s
        self.check_s = check_s
        self.is_leader = False
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None

    async def _connection(self) -> AsyncConnection:
        if self._conn is None or self._conn.closed:
            if self._engine is None:
                self._engine = create_async_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            self._conn = await self._engine.connect()
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self.is_leader = False
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                await conn.invalidate()

    async def try_acquire(self) -> bool:
        """One attempt; a database error counts as "not now"."""
        try:
            conn = await self._connection()
            got = bool(
                await conn.scalar(
                    text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": LOCK_CLASS, "k": self.key}
                )
            )
        except Exception as exc:
            log.warning("scheduler leadership: cannot reach the database: %s", exc)
            await self._drop_connection()
            return False
        self.is_leader = got
        return got

    async def holds_lock(self) -> bool:
        try:
            conn = await self._connection()
            held = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND classid = :c AND objid = :k AND pid = pg_backend_pid()"
                ),
                {"c": LOCK_CLASS, "k": self.key},
            )
        except Exception as exc:
            log.warning("scheduler leadership: lost the lock connection: %s", exc)
            await self._drop_connection()
            return False
        return bool(held)

    async def acquire(self, stop: asyncio.Event) -> bool:
        waiting_logged = False
        while not stop.is_set():
            if await self.try_acquire():
                log.info("scheduler: this process leads")
                return True
            if not waiting_logged:
                log.info("scheduler: another process leads; standing by")
                waiting_logged = True
            await _wait(stop, self.retry_s)
        return False

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _wait(stop, self.check_s)
            if stop.is_set():
                return
            if not await self.holds_lock():
                log.warning("scheduler: leadership lost; stopping the tickers")
                await self._drop_connection()
                return

    async def release(self) -> None:
        if self._conn is not None and self.is_leader:
            try:
                await self._conn.execute(
                    text("SELECT pg_advisory_unlock(:c, :k)"), {"c": LOCK_CLASS, "k": self.key}
                )
            except Exception:
                pass
        await self._drop_connection()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


def leadership_for(url: str) -> Leadership:
    if url.startswith("postgresql"):
        return AdvisoryLeader(url)
    return SoleLeader()
