"""What every benchmark needs: a throwaway database and a percentile."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from core.db.engine import Database


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


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
