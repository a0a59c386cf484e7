"""The ways into the database that differ by backend: ``read`` and ``write_one``."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from core.db.engine import insert_ignore
from core.db.tables import processed_updates


async def test_write_one_returns_its_rows_and_count_and_is_committed(db, clock) -> None:  # noqa: ANN001
    now = clock.now()
    stmt = insert_ignore(db, processed_updates).returning(processed_updates.c.update_id)
    first = await db.write_one(stmt, [{"update_id": i, "received_at": now} for i in (1, 2)])
    again = await db.write_one(stmt, [{"update_id": i, "received_at": now} for i in (2, 3)])
    assert sorted(r[0] for r in first.rows) == [1, 2]
    assert [r[0] for r in again.rows] == [3]  # 2 was there already
    moved = await db.write_one(update(processed_updates)
                               .where(processed_updates.c.update_id.in_((1, 3)))
                               .values(received_at=now))
    assert moved.rowcount == 2 and moved.rows == []
    async with db.read() as conn:  # another connection sees it: nothing left uncommitted
        ids = (await conn.execute(select(processed_updates.c.update_id))).scalars().all()
    assert sorted(ids) == [1, 2, 3]


async def test_write_one_that_fails_leaves_nothing(db, clock) -> None:  # noqa: ANN001
    row = {"update_id": 7, "received_at": clock.now()}
    await db.write_one(processed_updates.insert(), row)
    with pytest.raises(IntegrityError):
        await db.write_one(processed_updates.insert(), [{"update_id": 8, "received_at": clock.now()}, row])
    async with db.read() as conn:
        ids = (await conn.execute(select(processed_updates.c.update_id))).scalars().all()
    assert ids == [7]


async def test_postgres_reads_run_without_a_transaction_around_them(db) -> None:  # noqa: ANN001
    """Each statement of a read is its own transaction on PostgreSQL (READ COMMITTED gave
    each its own snapshot anyway): no BEGIN/COMMIT round trips."""
    if not db.is_postgres:
        pytest.skip("SQLite reads keep one snapshot for the block")
    async with db.read() as conn:
        first = await conn.scalar(text("SELECT pg_current_xact_id()::text"))
        second = await conn.scalar(text("SELECT pg_current_xact_id()::text"))
    assert first != second  # inside one transaction both would name the same one
