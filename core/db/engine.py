"""Engine set-up for both backends and the unit of work.

SQLite: WAL so readers never block the writer, a busy timeout so writers queue instead of
failing, and ``BEGIN IMMEDIATE`` for write transactions so two writers never both read and
then deadlock on upgrading their locks. PostgreSQL: asyncpg, READ COMMITTED; every money write
is a guarded UPDATE or a row lock, so no stronger isolation is needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Insert
from sqlalchemy.sql.schema import Table

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_engine(url: str, **kw: Any) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=kw.pop("pool_size", 8),
        max_overflow=kw.pop("max_overflow", 8),
        **kw,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver so we can say BEGIN IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        set_wal(cur)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def set_wal(cur: Any) -> None:
    """Switch a new database file to WAL. WAL is stored in the file, so this is a read on
    every later connection; only the very first switch takes an exclusive lock, and SQLite
    answers "locked" at once (no busy wait) when another process opens the file at the same
    moment, so that one case is retried briefly."""
    cur.execute("PRAGMA journal_mode")
    if str(cur.fetchone()[0]).lower() == "wal":
        return
    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the driver's OperationalError, whichever adapter wraps it
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)


class Database:
    """One engine and the two ways in: a write transaction and a read-only one.

    Services own their transactions: ``async with db.begin() as conn`` commits on success and
    rolls back on any exception. Nothing else commits. Never await a network call inside one.
    """

    def __init__(self, url: str, *, echo: bool = False, **engine_kw: Any) -> None:
        self.url = url
        if url.startswith("sqlite"):
            self.engine = _sqlite_engine(url, echo=echo, **engine_kw)
        else:
            engine_kw.setdefault("pool_size", 20)
            engine_kw.setdefault("max_overflow", 20)
            self.engine = create_async_engine(url, echo=echo, **engine_kw)
        self.dialect = self.engine.dialect.name
        # SQLite has one writer at a time. Queueing writers of this process on an asyncio
        # lock keeps them off SQLite's busy handler, which sleeps in growing steps; other
        # processes still wait through busy_timeout.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(readonly=True)
            async with conn.begin():
                yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()


_INSERT_IGNORE: dict[tuple[str, str], Insert] = {}


def insert_ignore(conn: AsyncConnection, table: Table) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` for the connection's dialect.

    Used instead of catching IntegrityError, which on PostgreSQL would abort the transaction.
    The caller checks ``rowcount`` (0 = the row already existed). The statement is built once
    per dialect and table; hot paths pass the row as parameters
    (``conn.execute(insert_ignore(conn, t), row)``) so nothing is rebuilt per call.
    """
    key = (conn.dialect.name, table.name)
    stmt = _INSERT_IGNORE.get(key)
    if stmt is None:
        dialect_insert = postgresql.insert if key[0] == "postgresql" else sqlite.insert
        stmt = _INSERT_IGNORE[key] = dialect_insert(table).on_conflict_do_nothing()
    return stmt
