"""SQLite called inline from the event loop, for the shop's own short transactions.

Why not aiosqlite here: it runs each connection in a thread and hands every driver call
(cursor, execute, fetch, close — about four per statement) back to the event loop through
``call_soon_threadsafe``. A statement itself takes microseconds, but each hand-off waits
its turn behind whatever else the loop is doing, and the thread then competes with the loop
for the GIL. Under load a write transaction therefore held SQLite's single write lock for
5–20 ms of mostly waiting, every other writer queued behind it, and the bot's p99 latency
went to seconds (``python -m bench.bot``: p99 0.58–2.2 s with aiosqlite, 0.05–0.3 s inline).
Inline, the lock is held for the transaction's real work.

What makes inline safe: no transaction of ours waits on the network (a rule of the
codebase), WAL keeps readers and the writer from blocking each other, and a connection never
waits on a lock inside SQLite: ``busy_timeout`` is 0 and ``Database`` retries a busy
``BEGIN`` by sleeping on the event loop (another connection of this same loop may be the one
holding the lock, so blocking the loop there could never end). Long read-only scans go
through aiosqlite (``Database.scan``) so they never hold the loop.

The dialect is the stock pysqlite one, marked async so ``AsyncEngine`` accepts it.
``Database`` hands out ``InlineConnection``: the ``AsyncConnection`` API the code uses
(``execute``, ``scalar``, ``scalars``, ``exec_driver_sql``, ``run_sync``) calling straight
into the synchronous connection. SQLAlchemy's greenlet bridge (a new greenlet and two
switches per call) bought nothing for a driver that never waits, and cost as much as the
statement itself: a one-statement transaction went from ~450 µs to ~200 µs of CPU here.
Anything still reaching the bridge (``begin``/``close`` on a plain ``AsyncConnection`` of
this engine, as tests and tools may use) gets an already finished awaitable per statement,
which is what the bridge expects of an async driver, and costs no loop iteration.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util.concurrency import await_, in_greenlet

DRIVER = "numbershop_inline"


async def _done() -> None:
    return None


class _Cursor(sqlite3.Cursor):
    async def _async_soft_close(self) -> None:
        """Results are fully buffered by sqlite3's cursor; nothing to release."""


# What BEGIN says. Writers take the write lock up front (two writers never both read and
# then deadlock upgrading); readers take their snapshot at once (the PRAGMA reads the
# database), where a busy database can still be retried.
WRITE_BEGIN = ("BEGIN IMMEDIATE",)
READ_BEGIN = ("BEGIN", "PRAGMA schema_version")


class _Connection(sqlite3.Connection):
    begin_statements: tuple[str, ...] = WRITE_BEGIN  # ``Database`` sets READ_BEGIN for reads

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)


class SQLiteDialect_inline(SQLiteDialect_pysqlite):
    driver = DRIVER
    is_async = True
    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        return pool.AsyncAdaptedQueuePool if cls._is_url_file_db(url) else pool.StaticPool

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        cparams.setdefault("factory", _Connection)
        # Connections are made on the loop's thread but may be finalised on another.
        cparams.setdefault("check_same_thread", False)
        return super().connect(*cargs, **cparams)

    def do_begin(self, dbapi_connection: Any) -> None:
        """The driver is in autocommit mode (the engine's connect hook), so the dialect says
        BEGIN itself — here rather than in an engine ``begin`` listener, because any
        connection-event listener makes SQLAlchemy dispatch its execute events on every
        statement, which cost more than a short transaction's own statements."""
        for sql in dbapi_connection.begin_statements:
            dbapi_connection.execute(sql)

    def do_execute(self, cursor: Any, statement: Any, parameters: Any, context: Any = None) -> None:
        super().do_execute(cursor, statement, parameters, context)  # type: ignore[no-untyped-call]  # unannotated in SQLAlchemy
        if in_greenlet():
            await_(_done())

    def do_execute_no_params(self, cursor: Any, statement: Any, context: Any = None) -> None:
        super().do_execute_no_params(cursor, statement, context)  # type: ignore[no-untyped-call]  # unannotated in SQLAlchemy
        if in_greenlet():
            await_(_done())

    def do_executemany(self, cursor: Any, statement: Any, parameters: Any, context: Any = None) -> None:
        super().do_executemany(cursor, statement, parameters, context)  # type: ignore[no-untyped-call]  # unannotated in SQLAlchemy
        if in_greenlet():
            await_(_done())


class InlineConnection(AsyncConnection):
    """An ``AsyncConnection`` whose calls run the synchronous connection directly.

    Only for connections of the inline dialect: nothing here can wait, so there is nothing
    to bridge. Results are fully buffered (sqlite3 fetches rows as asked, but a statement
    never waits on I/O we would have to yield for), so the synchronous results are returned
    as they are, as ``AsyncConnection`` itself does for buffered results.
    """

    async def execute(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        return self._proxied.execute(statement, parameters, execution_options=execution_options)

    async def scalar(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        return self._proxied.scalar(statement, parameters, execution_options=execution_options)

    async def scalars(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        return self._proxied.scalars(statement, parameters, execution_options=execution_options)

    async def exec_driver_sql(
        self, statement: str, parameters: Any = None, execution_options: Any = None
    ) -> Any:
        return self._proxied.exec_driver_sql(statement, parameters, execution_options)

    async def run_sync(self, fn: Any, *arg: Any, **kw: Any) -> Any:
        return fn(self._proxied, *arg, **kw)


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_inline")


def inline_url(url: str) -> URL:
    """The same database file (or memory) with this module's driver."""
    return make_url(url).set(drivername=f"sqlite+{DRIVER}")
