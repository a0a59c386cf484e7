"""Recording the codes of many orders in one transaction (``OrderService.record_many``, the
poller's path) and the ledger's batch capture under it (``ledger.post_holds``).

The batch must leave every order, hold, message and notification exactly as recording them
one at a time would, keep every race outcome (a cancel racing a code, two pollers on the same
orders) one of the legal ones, and cost a number of statements that does not grow with the
batch beyond one compare-and-set per captured order. Each shop ends with the ledger auditor.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from core import ledger
from core.db.tables import accounts, order_events, order_messages, orders, transfers
from core.db.tables import outbox as outbox_t
from core.errors import HoldAlreadyResolved, NotFound, OrderNotFound
from core.invariants import check_invariants
from core.providers.base import SmsMessage
from tests.integration.orders_support import ScriptedProvider, Shop


@pytest.fixture
async def shop(db, clock):
    s = Shop(db, clock, {"alpha": ScriptedProvider("alpha", clock)})
    await s.setup_catalog(stock=1000)
    yield s
    await s.assert_books_clean()


async def _buy(shop, user, key, price=100):
    quote = await shop.quote(user.id, price=price)
    return await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key=key)


async def _orders(shop, n, *, users=3, funds=10_000):
    people = [await shop.user(100 + u, funds=funds) for u in range(users)]
    return people, [await _buy(shop, people[i % users], f"k{i}") for i in range(n)]


def _code(n, mid=None):
    return SmsMessage(mid or f"m-{n}", f"{n:06d}", f"Your code {n:06d}")


async def _rows(db, table, *where):
    async with db.read() as conn:
        return (await conn.execute(select(table).where(*where))).mappings().all()


async def _resolutions(db, hold_id):
    async with db.read() as conn:
        return (await conn.scalars(select(transfers.c.kind).where(
            transfers.c.pending_id == hold_id))).all()


class StatementCounter:
    """Counts the statements the database is sent (an executemany counts once)."""

    def __init__(self, db):
        self.engine = db.engine.sync_engine
        self.count = 0

    def _on(self, *_args):
        self.count += 1

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._on)


# ------------------------------------------------------------------ ledger.post_holds

async def _holds(db, clock, n, amount=100):
    now = clock.now()
    async with db.begin() as conn:
        revenue = await ledger.system_account(conn, ledger.REVENUE)
        topups = await ledger.system_account(conn, ledger.TOPUPS)
        wallets = [await ledger.open_wallet(conn, now) for _ in range(2)]
        for w in wallets:
            await ledger.post_transfer(conn, id=ledger.new_id(), debit=topups, credit=w,
                                       amount=amount * n, code="topup", now=now)
        holds = []
        for i in range(n):
            hold = ledger.new_id()
            await ledger.create_hold(conn, id=hold, debit=wallets[i % 2], credit=revenue,
                                     amount=amount + i, now=now,
                                     timeout_at=now + timedelta(minutes=30), code="hold")
            holds.append(hold)
    return wallets, revenue, holds


async def _accounts(db):
    async with db.read() as conn:
        return {r.id: tuple(r[1:]) for r in await conn.execute(select(
            accounts.c.id, accounts.c.debits_posted, accounts.c.credits_posted,
            accounts.c.debits_pending, accounts.c.credits_pending))}


async def test_post_holds_moves_exactly_what_post_hold_moves_one_by_one(db, clock):
    wallets, revenue, holds = await _holds(db, clock, 6)
    amounts = [100 + i for i in range(6)]

    async def deltas(capture):
        before = await _accounts(db)
        async with db.begin() as conn:
            results = await capture(conn)
        after = await _accounts(db)
        return results, {acc: tuple(a - b for a, b in zip(after[acc], before[acc], strict=True))
                         for acc in after if after[acc] != before[acc]}

    async def one_by_one(conn):
        return [await ledger.post_hold(conn, h, clock.now()) for h in holds[:3]]

    singles, single_moves = await deltas(one_by_one)
    batch, batch_moves = await deltas(lambda conn: ledger.post_holds(conn, holds[3:], clock.now()))
    assert [r.created for r in singles + batch] == [True] * 6
    assert [r.amount for r in singles + batch] == amounts
    assert [r.id for r in batch] == [ledger.derived_id(h, ledger.POST_PENDING) for h in holds[3:]]

    def expected(idx):  # (debits_posted, credits_posted, debits_pending, credits_pending)
        out = {revenue: (0, sum(amounts[i] for i in idx), 0, -sum(amounts[i] for i in idx))}
        for w_i, wallet in enumerate(wallets):
            paid = sum(amounts[i] for i in idx if i % 2 == w_i)
            out[wallet] = (paid, 0, -paid, 0)
        return out

    assert single_moves == expected([0, 1, 2])
    assert batch_moves == expected([3, 4, 5])
    for hold in holds:
        assert await _resolutions(db, hold) == [ledger.POST_PENDING]
    assert await check_invariants(db, clock.now()) == []


async def test_post_holds_again_is_a_no_op_that_reports_exists(db, clock):
    _w, _r, holds = await _holds(db, clock, 3)
    async with db.begin() as conn:
        await ledger.post_hold(conn, holds[0], clock.now())
        first = await ledger.post_holds(conn, holds, clock.now())
    before = await _accounts(db)
    async with db.begin() as conn:
        again = await ledger.post_holds(conn, holds + holds[:1], clock.now())
    assert [r.created for r in first] == [False, True, True]
    assert [r.created for r in again] == [False, False, False, False]
    assert await _accounts(db) == before
    assert await check_invariants(db, clock.now()) == []


async def test_post_holds_refuses_a_voided_hold_and_the_batch_leaves_no_trace(db, clock):
    _w, _r, holds = await _holds(db, clock, 3)
    async with db.begin() as conn:
        await ledger.void_hold(conn, holds[1], clock.now())
    before = await _accounts(db)
    with pytest.raises(HoldAlreadyResolved):
        async with db.begin() as conn:
            await ledger.post_holds(conn, holds, clock.now())
    assert await _accounts(db) == before
    assert await _resolutions(db, holds[0]) == []
    assert await _resolutions(db, holds[1]) == [ledger.VOID_PENDING]
    with pytest.raises(NotFound):
        async with db.begin() as conn:
            await ledger.post_holds(conn, [holds[0], "no-such-hold"], clock.now())
    assert await _resolutions(db, holds[0]) == []
    assert await check_invariants(db, clock.now()) == []
