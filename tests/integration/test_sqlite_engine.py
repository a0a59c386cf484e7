"""SQLite transactions run inline on the event loop; these pin down what keeps that safe.

Two ``Database`` objects on one file stand for two processes (each has its own write lock,
so only SQLite's file lock stands between them), but share this test's event loop — the
hardest case: if a busy connection waited inside SQLite, the holder could never run again.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from core.db import engine as engine_mod
from core.db.engine import Database
from core.db.tables import metadata, processed_updates

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def pair(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/shop.db"
    first, second = Database(url), Database(url)
    async with first.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield first, second
    await first.dispose()
    await second.dispose()


async def _insert(conn, update_id: int) -> None:
    await conn.execute(
        processed_updates.insert().values(update_id=update_id, received_at=text("CURRENT_TIMESTAMP"))
    )


async def _ids(db: Database) -> list[int]:
    async with db.read() as conn:
        return list(
            (
                await conn.scalars(
                    select(processed_updates.c.update_id).order_by(processed_updates.c.update_id)
                )
            ).all()
        )


async def test_a_busy_writer_waits_on_the_loop_not_in_sqlite(pair) -> None:
    first, second = pair
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with first.begin() as conn:
            await _insert(conn, 1)
            holding.set()
            await release.wait()  # the loop must keep running for this to ever return

    async def follow() -> list[int]:
        async with second.begin() as conn:
            await _insert(conn, 2)
            return list((await conn.scalars(select(processed_updates.c.update_id))).all())

    holder = asyncio.create_task(hold())
    await holding.wait()
    follower = asyncio.create_task(follow())
    for _ in range(20):  # give the follower many turns at a locked database
        await asyncio.sleep(0.005)
    assert not follower.done(), "the second writer must wait for the first to commit"
    # Readers are not blocked by the writer and do not see its uncommitted row.
    assert await _ids(second) == []
    release.set()
    await holder
    assert sorted(await asyncio.wait_for(follower, 10)) == [1, 2]


async def test_a_writer_gives_up_after_the_busy_timeout(pair, monkeypatch) -> None:
    first, second = pair
    monkeypatch.setattr(engine_mod, "SQLITE_BUSY_TIMEOUT_MS", 50)
    async with first.begin() as conn:
        await _insert(conn, 1)
        with pytest.raises(OperationalError, match="locked"):
            async with second.begin() as other:
                await _insert(other, 2)
    assert await _ids(second) == [1]


async def test_an_error_rolls_back_and_returns_the_connection(pair) -> None:
    first, _ = pair
    with pytest.raises(RuntimeError):
        async with first.begin() as conn:
            await _insert(conn, 1)
            raise RuntimeError("boom")
    assert await _ids(first) == []
    assert first.engine.pool.checkedout() == 0
    async with first.begin() as conn:  # the write lock was released too
        await _insert(conn, 2)
    assert await _ids(first) == [2]


async def test_scan_is_one_snapshot_read_in_aiosqlites_thread(pair) -> None:
    first, _ = pair
    async with first.begin() as conn:
        await _insert(conn, 1)
    async with first.scan() as scan:
        assert scan.dialect.driver == "aiosqlite"
        before = await scan.scalar(text("SELECT count(*) FROM processed_updates"))
        async with first.begin() as conn:  # a write commits while the scan is open
            await _insert(conn, 2)
        after = await scan.scalar(text("SELECT count(*) FROM processed_updates"))
    assert before == after == 1
    assert await _ids(first) == [1, 2]


async def test_shop_transactions_are_inline_and_never_wait_inside_sqlite(pair) -> None:
    first, _ = pair
    for way_in in (first.begin, first.read):
        async with way_in() as conn:
            assert conn.dialect.driver == "numbershop_inline"
            # A wait inside SQLite would stall the whole event loop, the lock holder too.
            assert await conn.scalar(text("PRAGMA busy_timeout")) == 0
    async with first.scan() as conn:  # aiosqlite's thread may wait
        assert await conn.scalar(text("PRAGMA busy_timeout")) == engine_mod.SQLITE_BUSY_TIMEOUT_MS


async def test_inline_transactions_skip_the_greenlet_bridge(pair, monkeypatch) -> None:
    """Everything the code calls on a transaction's connection runs directly, taking the
    connection from the pool included (the inline pool never waits; only a pool's very
    first connection is set up through the bridge, as the fixture's already was). The
    bridge used to cost as much as the statements themselves."""
    import sqlalchemy.ext.asyncio.engine as async_engine

    first, _ = pair
    spawned: list[str] = []
    real_spawn = async_engine.greenlet_spawn

    async def counting_spawn(fn, *args, **kw):
        spawned.append(getattr(fn, "__name__", repr(fn)))
        return await real_spawn(fn, *args, **kw)

    monkeypatch.setattr(async_engine, "greenlet_spawn", counting_spawn)
    async with first.begin() as conn:
        await _insert(conn, 7)
        assert await conn.scalar(select(processed_updates.c.update_id)) == 7
        assert list(await conn.scalars(select(processed_updates.c.update_id))) == [7]
        assert (await conn.exec_driver_sql("SELECT count(*) FROM processed_updates")).scalar() == 1
        assert (
            await conn.run_sync(lambda sync: sync.execute(select(processed_updates.c.update_id)).scalar())
            == 7
        )
    async with first.read() as conn:
        assert await conn.scalar(select(processed_updates.c.update_id)) == 7
    assert spawned == []


async def test_more_open_transactions_than_pooled_connections_never_wait(pair) -> None:
    """Taking an inline connection never waits (a wait there would need the greenlet bridge
    and could stall the loop): past the pool's size another connection is opened."""
    first, _ = pair
    async with first.begin() as conn:
        await _insert(conn, 1)
    inside = 0
    all_inside = asyncio.Event()
    readers = 30  # the pool keeps 8

    async def reader() -> int:
        nonlocal inside
        async with first.read() as conn:
            inside += 1
            if inside == readers:
                all_inside.set()
            await asyncio.wait_for(all_inside.wait(), 5)  # every reader holds its connection
            return len(list(await conn.scalars(select(processed_updates.c.update_id))))

    assert await asyncio.gather(*(reader() for _ in range(readers))) == [1] * readers


async def test_commits_never_checkpoint_the_wal_on_the_loop(pair) -> None:
    """SQLite's automatic checkpoint would run inside a commit, on the event loop."""
    first, _ = pair
    async with first.begin() as conn:
        assert (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar() == 0


async def test_the_wal_is_checkpointed_off_the_loop_every_n_commits(pair) -> None:
    db = Database(pair[0].url)
    db.checkpoint_every = 5
    try:
        for i in range(4):
            async with db.begin() as conn:
                await _insert(conn, i)
        await db.wait_for_checkpoint()
        assert db.last_checkpoint is None  # not due yet
        async with db.read() as conn:  # reads do not count
            await conn.exec_driver_sql("SELECT 1")
        async with db.begin() as conn:
            await _insert(conn, 4)
        await db.wait_for_checkpoint()
        assert db.last_checkpoint is not None
        frames, copied = db.last_checkpoint
        assert frames > 0 and copied == frames  # nothing was reading: all of it went back
        assert await _ids(db) == [0, 1, 2, 3, 4]
    finally:
        await db.dispose()
