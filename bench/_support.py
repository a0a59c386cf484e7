"""What every benchmark needs: a throwaway database, a percentile, and a driver that keeps
its own pauses out of what it measures."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from core.db.engine import Database


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@contextmanager
def driver_gc_off() -> Iterator[None]:
    """Keep the driver's cyclic garbage collector off while a phase is measured, as
    ``timeit`` does. A driver stamps latencies on its own loop, so its own pause is booked
    as the measured program's latency; and a driver that keeps every round's records grows,
    so its full collections grow with it (80 ms in the first round of ``bench.bot``, 250 ms
    by the third, each one landing on whichever bot was running). What earlier rounds left
    is collected and frozen first, so nothing piles up across rounds."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@asynccontextmanager
async def loop_lag(tick: float = 0.005) -> AsyncIterator[list[float]]:
    """The worst lateness (seconds) of this process's event loop while the block runs, in a
    one-item list read after the block: a check on the harness. A driver whose loop is late
    delays every stamp it takes, so a large value says the numbers measured the driver."""
    worst = [0.0]

    async def watch() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(tick)
            worst[0] = max(worst[0], time.perf_counter() - started - tick)

    watcher = asyncio.create_task(watch())
    try:
        yield worst
    finally:
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher


@asynccontextmanager
async def throwaway_database(kind: str, url: str | None, prog: str) -> AsyncIterator[Database]:
    """A fresh SQLite file, or a PostgreSQL database created on the server at ``url`` (or
    NUMBERSHOP_TEST_POSTGRES_URL) for this run and dropped afterwards."""
    if kind == "sqlite":
        workdir = tempfile.mkdtemp(prefix="nsbench-")
        db = Database(f"sqlite+aiosqlite:///{workdir}/bench.db")
        try:
            yield db
        finally:
            await db.dispose()
            shutil.rmtree(workdir, ignore_errors=True)
        return
    base = url or os.environ.get("NUMBERSHOP_TEST_POSTGRES_URL")
    if not base:
        sys.exit(f"{prog}: give --url or set NUMBERSHOP_TEST_POSTGRES_URL for --db postgres")
    base = "postgresql+asyncpg://" + base.split("://", 1)[1]
    name = f"numbershop_{prog.rsplit('.', 1)[-1]}_{os.getpid()}"

    async def admin(sql: str) -> None:
        engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    await admin(f'DROP DATABASE IF EXISTS "{name}"')
    await admin(f'CREATE DATABASE "{name}"')
    db = Database(base.rsplit("/", 1)[0] + "/" + name)
    try:
        yield db
    finally:
        await db.dispose()
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
