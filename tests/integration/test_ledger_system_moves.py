"""System accounts (revenue, topups, adjustments) move as a transaction's last statement.

Why it matters: on PostgreSQL the shared revenue row stays locked from its UPDATE to the
commit; moved where the transfer happens, every purchase waited for the others' remaining
statements. These tests pin down both halves: the books are exactly as before (commit,
rollback, capture, void, batch capture, outside ``Database.begin``), and on PostgreSQL a
second purchase holds its money while the first purchase's transaction is still open.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text

from core import ledger
from core.invariants import check_invariants


async def _wallet(db, clock, amount: int) -> int:
    now = clock.now()
    async with db.begin() as conn:
        wallet = await ledger.open_wallet(conn, now)
        topups = await ledger.system_account(conn, ledger.TOPUPS)
        await ledger.post_transfer(
            conn, id=ledger.new_id(), debit=topups, credit=wallet, amount=amount, code="topup", now=now
        )
    return wallet


async def _hold(conn, clock, wallet: int, revenue: int, amount: int) -> str:
    hold_id = ledger.new_id()
    await ledger.create_hold(
        conn,
        id=hold_id,
        debit=wallet,
        credit=revenue,
        amount=amount,
        timeout_at=clock.now() + timedelta(minutes=20),
        now=clock.now(),
        code="test-hold",
    )  # not a purchase: no order to belong to
    return hold_id


async def _balances(db, *ids: int) -> list[tuple[int, int, int, int]]:
    async with db.read() as conn:
        out = []
        for account_id in ids:
            b = await ledger.balance_of(conn, account_id)
            out.append((b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending))
        return out


async def test_books_come_out_the_same(db, clock) -> None:
    wallet = await _wallet(db, clock, 1000)
    async with db.read() as conn:
        revenue = await ledger.system_account(conn, ledger.REVENUE)
        topups = await ledger.system_account(conn, ledger.TOPUPS)
    assert await _balances(db, topups) == [(1000, 0, 0, 0)]

    async with db.begin() as conn:
        kept = await _hold(conn, clock, wallet, revenue, 100)
        released = await _hold(conn, clock, wallet, revenue, 30)
        batch = [await _hold(conn, clock, wallet, revenue, 5) for _ in range(3)]
    assert await _balances(db, wallet, revenue) == [(0, 1000, 145, 0), (0, 0, 0, 145)]

    with pytest.raises(RuntimeError):
        async with db.begin() as conn:
            await _hold(conn, clock, wallet, revenue, 200)
            raise RuntimeError("crash before commit")
    assert await _balances(db, wallet, revenue) == [(0, 1000, 145, 0), (0, 0, 0, 145)]

    async with db.begin() as conn:
        await ledger.capture_hold(conn, kept, clock.now())
        await ledger.void_hold(conn, released, clock.now())
        await ledger.capture_holds(conn, batch, clock.now())
    assert await _balances(db, wallet, revenue) == [(115, 1000, 0, 0), (0, 115, 0, 0)]
    assert await check_invariants(db, clock.now(), 0) == []


async def test_outside_database_begin_moves_apply_at_once(db, clock) -> None:
    wallet = await _wallet(db, clock, 100)
    # A plain connection: nothing would flush later.
    async with db.engine.connect() as conn, conn.begin():
        revenue = await ledger.system_account(conn, ledger.REVENUE)
        await _hold(conn, clock, wallet, revenue, 40)
    assert await _balances(db, revenue) == [(0, 0, 0, 40)]


async def test_a_refused_debit_leaves_no_system_move(db, clock) -> None:
    wallet = await _wallet(db, clock, 10)
    async with db.begin() as conn:
        revenue = await ledger.system_account(conn, ledger.REVENUE)
        with pytest.raises(ledger.InsufficientFunds):
            await _hold(conn, clock, wallet, revenue, 50)
        await _hold(conn, clock, wallet, revenue, 10)
    assert await _balances(db, wallet, revenue) == [(0, 10, 10, 0), (0, 0, 0, 10)]


async def test_postgres_purchases_do_not_queue_on_the_revenue_row(db, clock) -> None:
    if not db.is_postgres:
        pytest.skip("row locks held to commit are PostgreSQL's; SQLite has one writer anyway")
    first_wallet = await _wallet(db, clock, 100)
    second_wallet = await _wallet(db, clock, 100)
    async with db.read() as conn:
        revenue = await ledger.system_account(conn, ledger.REVENUE)
    first_holds, release = asyncio.Event(), asyncio.Event()

    async def slow_purchase() -> None:
        async with db.begin() as conn:
            await _hold(conn, clock, first_wallet, revenue, 60)
            first_holds.set()
            await release.wait()  # the rest of a purchase's transaction, still open

    first = asyncio.create_task(slow_purchase())
    await asyncio.wait_for(first_holds.wait(), 5)
    try:
        async with db.begin() as conn:  # would wait for `first` if revenue were locked
            await asyncio.wait_for(_hold(conn, clock, second_wallet, revenue, 70), 2)
    finally:
        release.set()
        await first
    assert await _balances(db, revenue) == [(0, 0, 0, 130)]
    assert await check_invariants(db, clock.now(), 0) == []


async def test_postgres_a_locked_revenue_shard_holds_up_only_its_own_orders(db, clock) -> None:
    """A purchase whose order picks another shard commits while one shard's row is locked by
    a transaction that has not committed yet (its end-of-transaction move done, as a busy
    event loop leaves it): the shards, not one revenue row, are what purchases queue on."""
    if not db.is_postgres:
        pytest.skip("row locks held to commit are PostgreSQL's; SQLite has one writer anyway")
    first_wallet = await _wallet(db, clock, 100)
    second_wallet = await _wallet(db, clock, 100)
    async with db.read() as conn:
        busy = await ledger.system_account(conn, ledger.REVENUE, spread="order-a")
        other = None
        for i in range(100):
            other = await ledger.system_account(conn, ledger.REVENUE, spread=f"order-{i}")
            if other != busy:
                break
    assert other is not None and other != busy
    locked, release = asyncio.Event(), asyncio.Event()

    async def moved_but_not_committed() -> None:
        async with db.begin() as conn:
            await _hold(conn, clock, first_wallet, busy, 60)
            await conn.execute(
                text("UPDATE accounts SET credits_pending = credits_pending WHERE id = :id"), {"id": busy}
            )  # the row lock
            locked.set()
            await release.wait()

    async def purchase_on_another_shard() -> None:
        async with db.begin() as conn:
            await _hold(conn, clock, second_wallet, other, 70)

    first = asyncio.create_task(moved_but_not_committed())
    await asyncio.wait_for(locked.wait(), 5)
    try:
        await asyncio.wait_for(purchase_on_another_shard(), 5)  # committed, not queued
        assert await _balances(db, other) == [(0, 0, 0, 70)]
    finally:
        release.set()
        await first
    assert await _balances(db, busy) == [(0, 0, 0, 60)]
    assert await check_invariants(db, clock.now(), 0) == []
