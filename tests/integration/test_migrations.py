"""Alembic revisions against real databases: every step up and down, and models == migrations.

Runs on a fresh SQLite file always, and on PostgreSQL in a private database created and
dropped here when ``NUMBERSHOP_TEST_POSTGRES_URL`` is set (the shared ``db`` fixture builds
its schema with ``create_all``, so it cannot tell whether the migrations are right).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from core import ledger
from core.db import migrate
from core.db.tables import accounts, metadata

PG_ENV = "NUMBERSHOP_TEST_POSTGRES_URL"


async def _pg_admin(base: str, sql: str) -> None:
    eng = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with eng.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await eng.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request, tmp_path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/migrations.db"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL variant skipped: set {PG_ENV} to run it")
    base = migrate.normalize_url(base)
    name = f"numbershop_mig_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await _pg_admin(base, f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        await _pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _table_names(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def _schema_diffs(url: str) -> list[object]:
    def diff(sync_conn) -> list[object]:
        ctx = MigrationContext.configure(
            sync_conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(ctx, metadata))

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(diff)
    finally:
        await engine.dispose()


async def _system_account_count(url: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(
                select(func.count()).select_from(accounts).where(accounts.c.code.is_not(None))
            )
    finally:
        await engine.dispose()


def _revisions_base_to_head() -> list[tuple[str, str]]:
    """(revision, what to downgrade to) for every revision, oldest first."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    revs = list(reversed(list(script.walk_revisions())))
    out = []
    for rev in revs:
        down = rev.down_revision
        assert not isinstance(down, tuple), "merge revisions need this test extended"
        out.append((rev.revision, down or "base"))
    return out


async def test_upgrade_creates_every_table_and_schema_matches_models(url):
    assert await migrate.current_revision(url) is None
    assert await migrate.upgrade(url) == migrate.head_revision()
    assert await _table_names(url) == {t.name for t in metadata.sorted_tables} | {"alembic_version"}
    assert await _schema_diffs(url) == []


async def test_every_revision_downgrades_and_upgrades_again(url):
    revisions = _revisions_base_to_head()
    assert revisions, "no migration revisions found"
    await migrate.upgrade(url)
    for revision, down_to in reversed(revisions):
        assert await migrate.current_revision(url) == revision
        assert await migrate.downgrade(url, down_to) == (None if down_to == "base" else down_to)
    assert await _table_names(url) <= {"alembic_version"}
    for revision, _ in revisions:
        assert await migrate.upgrade(url, revision) == revision
    assert await _schema_diffs(url) == []


async def test_upgrade_seeds_system_accounts_once(url):
    await migrate.upgrade(url)
    await migrate.upgrade(url)
    assert await _system_account_count(url) == len(ledger.system_rows())


async def test_two_upgrades_at_once_both_succeed(url):
    """`numbershop run` and a second process starting together must not race on CREATE TABLE."""
    results = await asyncio.gather(migrate.upgrade(url), migrate.upgrade(url))
    assert results == [migrate.head_revision()] * 2
    assert await _system_account_count(url) == len(ledger.system_rows())
    assert await _schema_diffs(url) == []


async def test_ensure_current_upgrades_only_when_allowed(url):
    with pytest.raises(migrate.SchemaNotCurrent, match="numbershop db upgrade"):
        await migrate.ensure_current(url, auto_upgrade=False)
    assert await migrate.current_revision(url) is None
    await migrate.ensure_current(url, auto_upgrade=True)
    assert await migrate.current_revision(url) == migrate.head_revision()
    await migrate.ensure_current(url, auto_upgrade=False)  # at head: nothing to do


async def test_refuses_tables_created_without_alembic(url):
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
    finally:
        await engine.dispose()
    with pytest.raises(migrate.SchemaNotCurrent, match="no alembic_version"):
        await migrate.upgrade(url)


def test_initial_revision_imports_no_application_code():
    """Revisions must not break when core/db/tables.py changes later."""
    versions = migrate.MIGRATIONS_DIR / "versions"
    for path in versions.glob("*.py"):
        body = path.read_text()
        assert "import core" not in body and "from core" not in body, path.name


async def test_checking_the_revision_does_not_wait_for_a_writer(tmp_path):
    """Every CLI command checks the revision; a busy shop holding the write lock must not stall it."""
    import sqlite3

    path = tmp_path / "busy.db"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate.upgrade(url)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE accounts SET credits_posted = credits_posted WHERE id = 1")
        assert await asyncio.wait_for(migrate.current_revision(url), 5) == migrate.head_revision()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
