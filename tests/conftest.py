"""Shared fixtures: a controllable clock and a real database per test.

``db`` runs each test on SQLite (a fresh file) and, when ``NUMBERSHOP_TEST_POSTGRES_URL`` is
set, again on PostgreSQL in a private database created for this test session (so two test
runs on one server never see each other's rows). Without the variable the PostgreSQL variant
is skipped with the reason printed by ``-ra``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from core import ledger
from core.clock import FakeClock
from core.db.engine import Database
from core.db.tables import metadata

PG_ENV = "NUMBERSHOP_TEST_POSTGRES_URL"


def _pg_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        return None
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


@contextmanager
def scratch_postgres_database(base: str, prefix: str) -> Iterator[str]:
    """Create an empty database named ``<prefix>_<pid>_<random>`` on the server at ``base``
    (an asyncpg URL); yield its URL; drop it afterwards, connections and all."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(sql: str) -> None:
        eng = create_async_engine(base, isolation_level="AUTOCOMMIT")
        try:
            async with eng.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await eng.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str | None]:
    """Create a throwaway database for this session; yield its URL; drop it afterwards."""
    base = _pg_url()
    if base is None:
        yield None
        return
    with scratch_postgres_database(base, "numbershop_t") as url:

        async def create_schema() -> None:
            eng = create_async_engine(url)
            async with eng.begin() as conn:
                await conn.run_sync(metadata.create_all)
            await eng.dispose()

        asyncio.run(create_schema())
        yield url


@pytest.fixture(autouse=True)
def _no_routing_exploration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routing sends a random few percent of purchases to the least-known provider
    (``ROUTING_EXPLORATION``). A test that is not about routing must see the same provider
    every run, so exploration is off unless a test's settings turn it on."""
    monkeypatch.setenv("ROUTING_EXPLORATION", "0")


@pytest.fixture(autouse=True)
def _logger_levels_restored() -> Iterator[None]:
    """The command line quiets the per-update and per-request loggers for its process; a
    test that runs it must not take those lines from the tests after it (several read
    httpx's request lines with ``caplog``)."""
    from numbershop.cli import PER_EVENT_LOGGERS

    levels = {name: logging.getLogger(name).level for name in PER_EVENT_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))


async def make_database(kind: str, tmp_path, pg_url: str | None) -> Database:
    if kind == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path}/test.db")
        async with db.begin() as conn:
            await conn.run_sync(metadata.create_all)
        return db
    if pg_url is None:
        pytest.skip(f"PostgreSQL variant skipped: set {PG_ENV} to run it")
    db = Database(pg_url)
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    async with db.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    return db


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request, tmp_path, pg_database_url, clock) -> AsyncIterator[Database]:
    database = await make_database(request.param, tmp_path, pg_database_url)
    ledger.forget_system_accounts()
    async with database.begin() as conn:
        await ledger.ensure_system_accounts(conn, clock.now())
    try:
        yield database
    finally:
        await database.dispose()
