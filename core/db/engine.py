"""Engine set-up for both backends and the unit of work.

SQLite: WAL so readers never block the writer, ``BEGIN IMMEDIATE`` for write transactions so
two writers never both read and then deadlock on upgrading their locks, and the shop's own
transactions run inline on the event loop (``core.db.sqlite_inline`` says why) while long
scans go through aiosqlite's thread. PostgreSQL: asyncpg, READ COMMITTED; every money write
is a guarded UPDATE or a row lock, so no stronger isolation is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, CursorResult, Row, make_url
from sqlalchemy.exc import MissingGreenlet, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable, Insert
from sqlalchemy.sql.schema import Table

from core.db.sqlite_inline import READ_BEGIN, WRITE_BEGIN, InlineConnection, inline_url
from core.errors import NestedTransaction

log = logging.getLogger(__name__)

# How long a writer waits for another connection's write transaction before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Write commits between two WAL checkpoints, which run in a thread (see ``Database``). A
# purchase writes a handful of pages, so this is a few hundred pages: about what SQLite's
# own automatic checkpoint (every 1000 pages) let the WAL grow to.
CHECKPOINT_EVERY_COMMITS = 100
# While a new connection is set up (the first switch to WAL may have to wait briefly).
_SQLITE_SETUP_TIMEOUT_MS = 5_000


# The write transaction the current task has open: (database, task). A task started inside
# one inherits the value but is another task, so it may begin (and wait its turn) normally.
_WRITER: ContextVar[tuple[Database, asyncio.Task[Any]] | None] = ContextVar("numbershop_writer", default=None)


def _is_memory(url: str) -> bool:
    return make_url(url).database in (None, "", ":memory:")


def _sqlite_engine(url: str, *, inline: bool, **kw: Any) -> AsyncEngine:
    """An engine on the SQLite file ``url``: the inline driver for the shop's transactions,
    or aiosqlite (``inline=False``) for long scans off the loop."""
    parsed = make_url(url)
    if not _is_memory(url):
        prepare_private_sqlite_file(str(parsed.database))
        kw.setdefault("pool_size", 8)
        # Inline: never wait for a connection (nothing may wait on the loop's thread), open
        # another; connections are a file handle each and transactions are short.
        kw.setdefault("max_overflow", -1 if inline else 8)
    else:
        kw.pop("pool_size", None)
        kw.pop("max_overflow", None)
    # Inline connections must never wait inside SQLite (it would stall the whole loop):
    # Database retries a busy BEGIN on the loop instead. aiosqlite's thread may wait.
    busy_ms = 0 if inline else SQLITE_BUSY_TIMEOUT_MS
    engine = create_async_engine(
        inline_url(url) if inline else url,
        connect_args={"timeout": _SQLITE_SETUP_TIMEOUT_MS / 1000},
        **kw,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver so we can say BEGIN IMMEDIATE.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={_SQLITE_SETUP_TIMEOUT_MS}")
        set_wal(cur)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        if inline:  # never checkpoint inside a commit on the loop; Database does it off it
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.close()

    if not inline:  # the inline dialect says BEGIN itself (``do_begin``)

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            readonly = conn.get_execution_options().get("readonly")
            for sql in READ_BEGIN if readonly else WRITE_BEGIN:
                conn.exec_driver_sql(sql)

    return engine


def prepare_private_sqlite_file(database: str) -> None:
    """Create the database's folder (0700) and file (0600) before SQLite does, so the file
    holding password and token hashes is never readable by other users of the machine.

    SQLite creates ``-wal``, ``-shm`` and ``-journal`` with the main file's permissions, so a
    private main file is enough for new files; an existing file (and its companions) made
    by an older version is tightened. A folder that already existed (the working directory,
    a shared mount) is left as it is: only one this function creates is made private.
    """
    path = Path(database)
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for suffix in ("", "-wal", "-shm", "-journal"):
        companion = Path(database + suffix)
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)


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


def _is_busy(exc: OperationalError) -> bool:
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc.orig)


class Database:
    """One engine and the ways in: a write transaction, a read-only one, and a long scan.

    Services own their transactions: ``async with db.begin() as conn`` commits on success and
    rolls back on any exception. Nothing else commits. Never await a network call inside one.

    SQLite's WAL checkpoints run in a thread. By default SQLite runs one inside the commit
    that takes the WAL past 1000 pages, and our commits run on the event loop, so that one
    commit held the loop (and the write lock) for the whole copy back into the database:
    6-7.5 ms of CPU in that one commit, 45-49 ms of wall time on a busy two-core machine
    (``python -m bench.wal``; a commit otherwise takes ~0.1 ms). The inline connections therefore say
    ``wal_autocheckpoint=0`` and, every ``checkpoint_every`` write commits, a PASSIVE
    checkpoint runs on a connection of its own in a thread: it never blocks a writer or a
    reader, and gives way to them (what it cannot copy now, the next one copies).
    """

    def __init__(self, url: str, *, echo: bool = False, **engine_kw: Any) -> None:
        self.url = url
        self._scan_engine: AsyncEngine | None = None
        self._echo = echo
        if url.startswith("sqlite"):
            self.engine = _sqlite_engine(url, inline=True, echo=echo, **engine_kw)
        else:
            engine_kw.setdefault("pool_size", 20)
            engine_kw.setdefault("max_overflow", 20)
            self.engine = create_async_engine(url, echo=echo, **engine_kw)
        self.dialect = self.engine.dialect.name
        # SQLite has one writer at a time. Writers of this process queue on an asyncio lock
        # (in arrival order, without polling); other processes' writers are waited out by
        # retrying BEGIN on the loop.
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        on_file = self.is_sqlite and not _is_memory(url)
        self.checkpoint_every = CHECKPOINT_EVERY_COMMITS if on_file else 0  # 0: never
        self.last_checkpoint: tuple[int, int] | None = None  # (WAL frames, frames copied back)
        self._commits = 0
        self._checkpoint: asyncio.Future[None] | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._kept: set[KeptConnection] = set()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction. ``NestedTransaction`` if this task already has one open here:
        on SQLite the inner block would wait for the outer one's write lock forever."""
        task = asyncio.current_task()
        owner = _WRITER.get()
        if owner is not None and owner[0] is self and owner[1] is task:
            raise NestedTransaction(
                "db.begin() inside db.begin() of the same task; pass the open connection down instead"
            )
        token = _WRITER.set((self, task)) if task is not None else None
        try:
            if self._write_lock is None:
                async with self.engine.begin() as conn, _end_of_transaction_work(conn):
                    yield conn
                return
            async with (
                self._write_lock,
                self._sqlite_transaction(readonly=False) as conn,
                _end_of_transaction_work(conn),
            ):
                yield conn
        finally:
            if token is not None:
                _WRITER.reset(token)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """Reads. On SQLite one snapshot for the whole block. On PostgreSQL each statement
        sees what was committed when it started (READ COMMITTED gives every statement its
        own snapshot even inside a transaction), so the statements run in autocommit: a
        BEGIN and a COMMIT around them bought nothing but two round trips per read. Use
        ``scan`` when several queries must see one moment."""
        if not self.is_sqlite:
            async with self.engine.connect() as conn:
                yield await conn.execution_options(isolation_level="AUTOCOMMIT")
            return
        async with self._sqlite_transaction(readonly=True) as conn:
            yield conn

    async def write_one(self, statement: Executable, parameters: Any = None) -> Written:
        """One write statement that is atomic by itself (an upsert of independent rows, a
        guarded UPDATE … RETURNING): its rows and row count.

        On PostgreSQL it runs in autocommit, its own transaction: one round trip instead
        of three for the hot single-statement writes (the update log, outbox claims and
        settlements). With a list of parameter sets SQLAlchemy may split it into several
        statements, so each row must stand alone. On SQLite it runs in the usual write
        transaction, where this process's write lock and the busy retries live. Nothing
        registered with ``at_commit`` can run here: anything more than one statement
        belongs in ``begin()``."""
        if self.is_sqlite:
            async with self.begin() as conn:
                return Written.of(await conn.execute(statement, parameters))
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return Written.of(await conn.execute(statement, parameters))

    @asynccontextmanager
    async def scan(self) -> AsyncIterator[AsyncConnection]:
        """A read-only snapshot for long work (audits, reports): every query in it sees one
        moment. On SQLite it runs in aiosqlite's thread, so a scan of the whole ledger never
        holds up the event loop; on PostgreSQL it is a REPEATABLE READ read-only transaction."""
        if self.is_postgres:
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
                async with conn.begin():
                    yield conn
            return
        if _is_memory(self.url):  # another engine would see another database
            async with self.read() as conn:
                yield conn
            return
        if self._scan_engine is None:
            self._scan_engine = _sqlite_engine(
                self.url, inline=False, echo=self._echo, pool_size=2, max_overflow=2
            )
        async with self._scan_engine.connect() as conn:
            conn = await conn.execution_options(readonly=True)
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def _sqlite_transaction(self, *, readonly: bool) -> AsyncIterator[AsyncConnection]:
        """Begin on an inline connection, retrying on the loop while another connection
        holds the lock (with ``busy_timeout`` 0 SQLite answers busy at once).

        Begin, commit and close are called synchronously: the driver never waits, and the
        greenlet bridge cost more than the work (see ``sqlite_inline``)."""
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        delay = 0.0005
        while True:
            # The inline pool never waits (see _sqlite_engine), so a connection is taken
            # without SQLAlchemy's greenlet bridge — except a pool's very first one, whose
            # set-up SQLAlchemy runs under an async mutex.
            try:
                conn = InlineConnection(self.engine, self.engine.sync_engine.connect())
            except MissingGreenlet:
                conn = cast(InlineConnection, await InlineConnection(self.engine).start())
            sync_conn = conn.sync_connection
            assert sync_conn is not None
            raw = sync_conn.connection.dbapi_connection
            assert raw is not None  # None only once invalidated; this one was just checked out
            try:
                raw.begin_statements = READ_BEGIN if readonly else WRITE_BEGIN
                tx = sync_conn.begin()
            except OperationalError as exc:
                _release(sync_conn)
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            except BaseException:
                _release(sync_conn)
                raise
            else:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
        try:
            try:
                yield conn
            except BaseException:
                tx.rollback()
                raise
            tx.commit()
        finally:
            _release(sync_conn)
        if not readonly:
            self._count_commit()

    def _count_commit(self) -> None:
        if not self.checkpoint_every:
            return
        self._commits += 1
        if self._commits < self.checkpoint_every:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return  # one at a time; this one is due again at the next commit
        self._commits = 0
        self._checkpoint = asyncio.get_running_loop().run_in_executor(None, self._checkpoint_now)

    def _checkpoint_now(self) -> None:
        """In a worker thread: a PASSIVE checkpoint on this thread's own connection."""
        try:
            if self._checkpoint_conn is None:
                self._checkpoint_conn = sqlite3.connect(
                    str(make_url(self.url).database), timeout=0, isolation_level=None, check_same_thread=False
                )
            _busy, frames, copied = self._checkpoint_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.last_checkpoint = (int(frames), int(copied))
        except sqlite3.OperationalError as exc:  # another process's checkpointer is at work
            log.debug("WAL checkpoint skipped: %s", exc)
        except Exception as exc:  # the next one retries; a checkpoint is never worth a failure
            log.warning("WAL checkpoint failed: %s", exc)

    async def wait_for_checkpoint(self) -> None:
        """Until the checkpoint in flight (if any) is done."""
        if self._checkpoint is not None:
            await self._checkpoint

    def kept_connection(self) -> KeptConnection:
        """A connection kept open for a caller that runs one statement after another all day
        (the bot's update log); closed by ``dispose``."""
        kept = KeptConnection(self)
        self._kept.add(kept)
        return kept

    async def dispose(self) -> None:
        for kept in list(self._kept):
            await kept.close()
        self._kept.clear()
        await self.wait_for_checkpoint()
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None
        await self.engine.dispose()
        if self._scan_engine is not None:
            await self._scan_engine.dispose()


class KeptConnection:
    """Single statements, each atomic by itself, on one connection kept open between them.

    On PostgreSQL, taking a connection from SQLAlchemy's pool and giving it back costs more
    CPU than a small indexed statement itself: the update log's statements cost 0.19 ms
    each through the pool against 0.11 ms on a connection already open (``python -m
    bench.kept``). The bot runs two of them per update, so it keeps one autocommit
    connection for each instead. Statements on one ``KeptConnection`` run one at a time (a
    lock, uncontended for the update log, whose batches already flush one at a time). A
    failed statement closes the connection; the next one opens a fresh one, so a restarted
    server costs one error.

    On SQLite it is ``read()`` and ``write_one()``: the write lock lives there, and taking an
    inline connection is cheap.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: AsyncConnection | None = None
        self._lock = asyncio.Lock()

    async def read(self, statement: Executable, parameters: Any = None) -> Written:
        if self.db.is_sqlite:
            async with self.db.read() as conn:
                return Written.of(await conn.execute(statement, parameters))
        return await self._execute(statement, parameters)

    async def write(self, statement: Executable, parameters: Any = None) -> Written:
        """Like ``Database.write_one``: the statement must be atomic by itself."""
        if self.db.is_sqlite:
            return await self.db.write_one(statement, parameters)
        return await self._execute(statement, parameters)

    async def _execute(self, statement: Executable, parameters: Any) -> Written:
        async with self._lock:
            if self._conn is None:
                conn = await self.db.engine.connect()
                self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                return Written.of(await self._conn.execute(statement, parameters))
            except BaseException:
                await self._drop()
                raise

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


@dataclass(frozen=True, slots=True)
class Written:
    rows: list[Row[*tuple[Any, ...]]]  # any number of columns
    rowcount: int

    @classmethod
    def of(cls, result: CursorResult[*tuple[Any, ...]]) -> Written:
        """Read while the connection is still open: rows first, then the count."""
        return cls(list(result.all()) if result.returns_rows else [], result.rowcount)


def _release(sync_conn: Connection) -> None:
    """Back to the pool, set to begin as a writer again (the safe default for anyone else
    who takes it, e.g. a test's own ``engine.begin()``)."""
    if not (sync_conn.closed or sync_conn.invalidated):
        raw = sync_conn.connection.dbapi_connection
        assert raw is not None  # None only once invalidated, ruled out just above
        raw.begin_statements = WRITE_BEGIN
    sync_conn.close()


_INSERT_IGNORE: dict[tuple[str, str], Insert] = {}

_AT_COMMIT = "numbershop.at_commit"
T = TypeVar("T", bound="AtCommit")


class AtCommit(Protocol):
    async def flush(self, conn: AsyncConnection) -> None: ...


def at_commit(conn: AsyncConnection, key: str, factory: Callable[[], T]) -> T | None:
    """Work to run as the last statements of this ``Database.begin()`` transaction.

    Returns the transaction's object for ``key`` (made by ``factory`` on first use), whose
    ``flush`` runs right before COMMIT, or is dropped with a rollback. None outside a
    ``Database.begin()`` transaction: the caller must then do the work at once.
    Why: on PostgreSQL a row lock is held from the UPDATE to the commit; the ledger's shared
    system-account rows are updated by every purchase, so they are updated last (see
    ``core.ledger``) and hold their lock for one statement, not the whole transaction.
    """
    work = conn.sync_connection.info.get(_AT_COMMIT) if conn.sync_connection else None
    if work is None:
        return None
    if key not in work:
        work[key] = factory()
    return cast(T, work[key])


@asynccontextmanager
async def _end_of_transaction_work(conn: AsyncConnection) -> AsyncIterator[None]:
    assert conn.sync_connection is not None
    info = conn.sync_connection.info  # lives with the pooled connection: always removed below
    work: dict[str, AtCommit] = {}
    info[_AT_COMMIT] = work
    try:
        yield
        for item in work.values():
            await item.flush(conn)
    finally:
        info.pop(_AT_COMMIT, None)


def insert_ignore(on: AsyncConnection | Database, table: Table) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` for the dialect of ``on`` (a connection, or the
    database for ``Database.write_one``).

    Used instead of catching IntegrityError, which on PostgreSQL would abort the transaction.
    The caller checks ``rowcount`` (0 = the row already existed). The statement is built once
    per dialect and table; hot paths pass the row as parameters
    (``conn.execute(insert_ignore(conn, t), row)``) so nothing is rebuilt per call.
    """
    key = (on.dialect if isinstance(on, Database) else on.dialect.name, table.name)
    stmt = _INSERT_IGNORE.get(key)
    if stmt is None:
        dialect_insert = postgresql.insert if key[0] == "postgresql" else sqlite.insert
        stmt = _INSERT_IGNORE[key] = dialect_insert(table).on_conflict_do_nothing()
    return stmt
