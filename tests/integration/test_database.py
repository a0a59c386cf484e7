"""The ways into the database that differ by backend: ``read`` and ``write_one``."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from core.db.engine import insert_ignore
from core.db.tables import processed_updates
from core.errors import NestedTransaction


async def test_write_one_returns_its_rows_and_count_and_is_committed(db, clock) -> None:
    now = clock.now()
    stmt = insert_ignore(db, processed_updates).returning(processed_updates.c.update_id)
    first = await db.write_one(stmt, [{"update_id": i, "received_at": now} for i in (1, 2)])
    again = await db.write_one(stmt, [{"update_id": i, "received_at": now} for i in (2, 3)])
    assert sorted(r[0] for r in first.rows) == [1, 2]
    assert [r[0] for r in again.rows] == [3]  # 2 was there already
    moved = await db.write_one(
        update(processed_updates).where(processed_updates.c.update_id.in_((1, 3))).values(received_at=now)
    )
    assert moved.rowcount == 2 and moved.rows == []
    async with db.read() as conn:  # another connection sees it: nothing left uncommitted
        ids = (await conn.execute(select(processed_updates.c.update_id))).scalars().all()
    assert sorted(ids) == [1, 2, 3]


async def test_write_one_that_fails_leaves_nothing(db, clock) -> None:
    row = {"update_id": 7, "received_at": clock.now()}
    await db.write_one(processed_updates.insert(), row)
    with pytest.raises(IntegrityError):
        await db.write_one(processed_updates.insert(), [{"update_id": 8, "received_at": clock.now()}, row])
    async with db.read() as conn:
        ids = (await conn.execute(select(processed_updates.c.update_id))).scalars().all()
    assert ids == [7]


async def test_postgres_reads_run_without_a_transaction_around_them(db) -> None:
    """Each statement of a read is its own transaction on PostgreSQL (READ COMMITTED gave
    each its own snapshot anyway): no BEGIN/COMMIT round trips."""
    if not db.is_postgres:
        pytest.skip("SQLite reads keep one snapshot for the block")
    async with db.read() as conn:
        first = await conn.scalar(text("SELECT pg_current_xact_id()::text"))
        second = await conn.scalar(text("SELECT pg_current_xact_id()::text"))
    assert first != second  # inside one transaction both would name the same one


async def test_a_nested_begin_in_the_same_task_is_refused_and_the_outer_rolls_back(db, clock) -> None:
    """On SQLite the inner ``begin`` would wait forever for the write lock its own task holds.
    ``wait_for`` only guards the test against that hang; the assertion is the error type."""

    async def nested() -> None:
        async with db.begin() as conn:
            await conn.execute(processed_updates.insert().values(update_id=1, received_at=clock.now()))
            async with db.begin():
                pass

    with pytest.raises(NestedTransaction):
        await asyncio.wait_for(nested(), timeout=30)
    async with db.read() as conn:
        assert (await conn.execute(select(processed_updates.c.update_id))).all() == []
    async with db.begin() as conn:  # the lock was released: the next writer goes through
        await conn.execute(processed_updates.insert().values(update_id=2, received_at=clock.now()))


async def test_a_task_started_inside_a_transaction_may_begin_its_own(db, clock) -> None:
    """Another task waits its turn (it inherits the context, not the transaction)."""

    async def child() -> None:
        async with db.begin() as conn:
            await conn.execute(processed_updates.insert().values(update_id=2, received_at=clock.now()))

    async with db.begin() as conn:
        await conn.execute(processed_updates.insert().values(update_id=1, received_at=clock.now()))
        task = asyncio.create_task(child())
    await asyncio.wait_for(task, timeout=30)
    async with db.read() as conn:
        ids = (await conn.execute(select(processed_updates.c.update_id))).scalars().all()
    assert sorted(ids) == [1, 2]
