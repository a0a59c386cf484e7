"""Schema migrations and the reference rows every shop needs, applied from code.

``upgrade`` is what ``numbershop db upgrade`` and ``numbershop run`` call. It runs Alembic
inside one transaction of our own and then seeds the rows the services assume exist (the
ledger's system accounts, the canonical services and countries), idempotently, in the same
transaction — so a database is either at head *and* seeded, or untouched.

Two processes upgrading one database at once (``numbershop run`` next to ``numbershop bot
run``) must not both try to create the tables: on SQLite the transaction starts with
``BEGIN IMMEDIATE`` (the second writer waits, then finds the schema at head); on PostgreSQL a
transaction-scoped advisory lock serialises them, and PostgreSQL's DDL is transactional.

SQLite connections used for migrating run with ``foreign_keys=OFF``: Alembic's batch mode
rebuilds a table by copy-and-rename, which foreign-key enforcement would refuse while rows
point at it. ``PRAGMA foreign_key_check`` afterwards refuses to commit a broken result.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from core.clock import SystemClock
from core.db.engine import prepare_private_sqlite_file, set_wal
from core.errors import ShopError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000
# pg_advisory_xact_lock key: any constant that no other part of the shop uses.
PG_MIGRATION_LOCK = 0x6E756D62  # "numb"


class SchemaNotCurrent(ShopError):
    """The database is not at the code's head revision (or was built without Alembic)."""


def normalize_url(url: str) -> str:
    """Accept the spellings operators use and pick the async driver for each backend."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic config that needs no alembic.ini, so an installed package can migrate."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["configure_logger"] = False
    if url is not None:
        cfg.attributes["url"] = normalize_url(url)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the repository always ships a revision
        raise SchemaNotCurrent("no migration revisions found under core/db/migrations")
    return head


def migration_engine(url: str) -> AsyncEngine:
    """An engine for migrating: no pool, serialised writers, SQLite FKs off (see module doc)."""
    url = normalize_url(url)
    if not url.startswith("sqlite"):
        return create_async_engine(url, poolclass=NullPool)
    database = make_url(url).database
    if database and database != ":memory:":
        prepare_private_sqlite_file(database)
    engine = create_async_engine(
        url, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        set_wal(cur)
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        readonly = conn.get_execution_options().get("readonly")
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def _current(sync_conn: Connection) -> str | None:
    with _quiet_alembic():
        return MigrationContext.configure(sync_conn).get_current_revision()


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic logs two INFO lines per context; commands print their own one-line summary."""
    chatty = logging.getLogger("alembic.runtime.migration")
    level = chatty.level
    chatty.setLevel(logging.WARNING)
    try:
        yield
    finally:
        chatty.setLevel(level)


def _check_not_unmanaged(sync_conn: Connection) -> None:
    """Refuse to migrate tables that were created without Alembic (e.g. by create_all)."""
    names = set(inspect(sync_conn).get_table_names())
    if "alembic_version" not in names and "accounts" in names:
        raise SchemaNotCurrent(
            "the database already has numbershop tables but no alembic_version; "
            "it was not created by `numbershop db upgrade` — use a fresh database"
        )


def _alembic(sync_conn: Connection, action: str, revision: str) -> None:
    cfg = alembic_config(connection=sync_conn)
    before = _current(sync_conn)
    with _quiet_alembic():
        if action == "upgrade":
            _check_not_unmanaged(sync_conn)
            command.upgrade(cfg, revision)
        else:
            command.downgrade(cfg, revision)
    after = _current(sync_conn)
    if after != before:
        log.info("database schema %sd from %s to %s", action, before or "empty", after or "base")
    if sync_conn.dialect.name == "sqlite":
        broken = sync_conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise SchemaNotCurrent(f"migration left broken foreign keys: {broken[:3]}")


async def _serialise(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})


async def seed(conn: AsyncConnection, now: datetime) -> None:
    """Rows every shop needs; idempotent (insert-or-ignore), so safe on every start."""
    from core import ledger

    await ledger.ensure_system_accounts(conn, now)
    try:
        catalogue = importlib.import_module("core.catalogue")
    except ModuleNotFoundError as exc:  # the catalogue is optional until it lands
        if exc.name != "core.catalogue":
            raise
        return
    seed_reference_data = getattr(catalogue, "seed_reference_data", None)
    if seed_reference_data is not None:
        await seed_reference_data(conn)


async def upgrade(url: str, revision: str = "head", *, now: datetime | None = None) -> str | None:
    """Migrate to ``revision`` (default head), then seed; returns the revision now current."""
    async with _in_process(url):
        return await _upgrade(url, revision, now)


_LOCKS: dict[str, asyncio.Lock] = {}


def _in_process(url: str) -> asyncio.Lock:
    """Upgrades of one database from one process queue here; across processes SQLite's
    BEGIN IMMEDIATE and PostgreSQL's advisory lock serialise them."""
    return _LOCKS.setdefault(normalize_url(url), asyncio.Lock())


async def _upgrade(url: str, revision: str, now: datetime | None) -> str | None:
    engine = migration_engine(url)
    try:
        async with engine.begin() as conn:
            await _serialise(conn)
            await conn.run_sync(_alembic, "upgrade", revision)
            current = await conn.run_sync(_current)
            if current == head_revision():
                await seed(conn, now or SystemClock().now())
            return current
    finally:
        await engine.dispose()


async def downgrade(url: str, revision: str) -> str | None:
    """Migrate down to ``revision`` (``base`` drops everything); returns the revision now current."""
    engine = migration_engine(url)
    try:
        async with engine.begin() as conn:
            await _serialise(conn)
            await conn.run_sync(_alembic, "downgrade", revision)
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    engine = migration_engine(url)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(readonly=True)  # no write lock just to look
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()


async def ensure_current(url: str, *, auto_upgrade: bool) -> None:
    """Make sure the schema is at head before a command uses it.

    The embedded SQLite shop upgrades itself (nothing to set up); a shared PostgreSQL is
    migrated on purpose by an operator, so there we only say what to run.
    """
    current, head = await current_revision(url), head_revision()
    if current == head:
        return
    if auto_upgrade:
        await upgrade(url)
        return
    raise SchemaNotCurrent(
        f"the database is at revision {current or 'none'}, the code expects {head}; "
        "run `numbershop db upgrade`"
    )
