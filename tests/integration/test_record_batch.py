"""Recording the codes of many orders in one transaction (``OrderService.record_many``, the
poller's path) and the ledger's batch capture under it (``ledger.capture_holds``).

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
from core.errors import HoldAlreadyResolved, NotFound, OrderNotFound, OrderStateConflict
from core.invariants import check_invariants
from core.providers.base import SmsMessage
from tests.integration.orders_support import ScriptedProvider, Shop


@pytest.fixture
async def shop(db, clock):
    s = Shop(db, clock, {"alpha": ScriptedProvider("alpha", clock)})
    await s.setup_catalogue(stock=1000)
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
        return (await conn.scalars(select(transfers.c.kind).where(transfers.c.pending_id == hold_id))).all()


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


# ------------------------------------------------------------------ ledger.capture_holds


async def _holds(db, clock, n, amount=100):
    now = clock.now()
    async with db.begin() as conn:
        revenue = await ledger.system_account(conn, ledger.REVENUE)
        topups = await ledger.system_account(conn, ledger.TOPUPS)
        wallets = [await ledger.open_wallet(conn, now) for _ in range(2)]
        for w in wallets:
            await ledger.post_transfer(
                conn, id=ledger.new_id(), debit=topups, credit=w, amount=amount * n, code="topup", now=now
            )
        holds = []
        for i in range(n):
            hold = ledger.new_id()
            await ledger.create_hold(
                conn,
                id=hold,
                debit=wallets[i % 2],
                credit=revenue,
                amount=amount + i,
                now=now,
                timeout_at=now + timedelta(minutes=30),
                code="hold",
            )
            holds.append(hold)
    return wallets, revenue, holds


async def _accounts(db):
    async with db.read() as conn:
        return {
            r.id: tuple(r[1:])
            for r in await conn.execute(
                select(
                    accounts.c.id,
                    accounts.c.debits_posted,
                    accounts.c.credits_posted,
                    accounts.c.debits_pending,
                    accounts.c.credits_pending,
                )
            )
        }


async def test_post_holds_moves_exactly_what_post_hold_moves_one_by_one(db, clock):
    wallets, revenue, holds = await _holds(db, clock, 6)
    amounts = [100 + i for i in range(6)]

    async def deltas(capture):
        before = await _accounts(db)
        async with db.begin() as conn:
            results = await capture(conn)
        after = await _accounts(db)
        return results, {
            acc: tuple(a - b for a, b in zip(after[acc], before[acc], strict=True))
            for acc in after
            if after[acc] != before[acc]
        }

    async def one_by_one(conn):
        return [await ledger.capture_hold(conn, h, clock.now()) for h in holds[:3]]

    singles, single_moves = await deltas(one_by_one)
    batch, batch_moves = await deltas(lambda conn: ledger.capture_holds(conn, holds[3:], clock.now()))
    assert [r.created for r in singles + batch] == [True] * 6
    assert [r.amount for r in singles + batch] == amounts
    assert [r.id for r in batch] == [ledger.derived_id(h, ledger.TransferKind.CAPTURE) for h in holds[3:]]

    def expected(idx):  # (debits_posted, credits_posted, debits_pending, credits_pending)
        out = {revenue: (0, sum(amounts[i] for i in idx), 0, -sum(amounts[i] for i in idx))}
        for w_i, wallet in enumerate(wallets):
            paid = sum(amounts[i] for i in idx if i % 2 == w_i)
            out[wallet] = (paid, 0, -paid, 0)
        return out

    assert single_moves == expected([0, 1, 2])
    assert batch_moves == expected([3, 4, 5])
    for hold in holds:
        assert await _resolutions(db, hold) == [ledger.TransferKind.CAPTURE]
    assert await check_invariants(db, clock.now()) == []


async def test_post_holds_again_is_a_no_op_that_reports_exists(db, clock):
    _w, _r, holds = await _holds(db, clock, 3)
    async with db.begin() as conn:
        await ledger.capture_hold(conn, holds[0], clock.now())
        first = await ledger.capture_holds(conn, holds, clock.now())
    before = await _accounts(db)
    async with db.begin() as conn:
        again = await ledger.capture_holds(conn, holds + holds[:1], clock.now())
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
            await ledger.capture_holds(conn, holds, clock.now())
    assert await _accounts(db) == before
    assert await _resolutions(db, holds[0]) == []
    assert await _resolutions(db, holds[1]) == [ledger.TransferKind.VOID]
    with pytest.raises(NotFound):
        async with db.begin() as conn:
            await ledger.capture_holds(conn, [holds[0], "no-such-hold"], clock.now())
    assert await _resolutions(db, holds[0]) == []
    assert await check_invariants(db, clock.now()) == []


# ------------------------------------------------------------------ record_many


async def test_record_many_leaves_each_order_as_recording_it_alone_would(shop):
    people, bought = await _orders(shop, 6)
    waiting, cancelled, extra, refunded, textonly, idle = bought
    await shop.orders.cancel(cancelled.id, user_id=cancelled.user_id)
    await shop.orders.record_messages(extra.id, [_code(1)])
    await shop.orders.record_messages(refunded.id, [_code(2)])
    await shop.orders.staff_refund(refunded.id, actor="staff:test", reason="test")
    balances = [await shop.wallet(p) for p in people]

    views = await shop.orders.record_many(
        [
            (waiting.id, [_code(10), _code(11)]),
            (cancelled.id, [_code(20)]),
            (extra.id, [_code(1), _code(30)]),  # the first is already recorded
            (refunded.id, [_code(40)]),
            (textonly.id, [SmsMessage("t-1", None, "Welcome")]),
            ("no-such-order", [_code(50)]),
            (idle.id, []),
        ]
    )
    assert [v.status if v else None for v in views] == [
        "completed",
        "cancelled",
        "completed",
        "refunded",
        "waiting",
        None,
        "waiting",
    ]
    assert views[0].code == "000010"

    w = await _rows(shop.db, order_messages, order_messages.c.order_id == waiting.id)
    assert sorted((m["code"], m["charged"]) for m in w) == [("000010", True), ("000011", False)]
    assert [
        m["charged"] for m in await _rows(shop.db, order_messages, order_messages.c.order_id == cancelled.id)
    ] == [False]
    assert await _resolutions(shop.db, waiting.hold_transfer_id) == [ledger.TransferKind.CAPTURE]
    assert await _resolutions(shop.db, cancelled.hold_transfer_id) == [ledger.TransferKind.VOID]
    sent = {(r["order_id"], r["kind"]) for r in await _rows(shop.db, outbox_t)}
    assert (waiting.id, "completed") in sent and (waiting.id, "code_extra") in sent
    assert (extra.id, "code_extra") in sent
    assert not {(o, k) for o, k in sent if o in (cancelled.id, refunded.id, textonly.id)} - {
        (cancelled.id, "cancelled"),
        (refunded.id, "completed"),
        (refunded.id, "refunded"),
    }
    codes = await _rows(shop.db, outbox_t, outbox_t.c.order_id == waiting.id, outbox_t.c.kind == "code_extra")
    assert [c["payload"]["code"] for c in codes] == ["000011"]
    events = await _rows(
        shop.db, order_events, order_events.c.order_id == waiting.id, order_events.c.event == "code"
    )
    assert [(e["from_status"], e["to_status"], e["detail"]) for e in events] == [
        ("waiting", "completed", {"code": "000010"})
    ]
    # Only the waiting order was charged in this batch; its owner paid its price once.
    for person, before in zip(people, balances, strict=True):
        paid = 100 if person.id == waiting.user_id else 0
        assert (await shop.wallet(person)).balance == before.balance - paid

    again = await shop.orders.record_many([(waiting.id, [_code(10), _code(11)])])
    assert again[0].status == "completed"
    assert len(await _rows(shop.db, order_messages, order_messages.c.order_id == waiting.id)) == 2
    assert len(await _rows(shop.db, outbox_t, outbox_t.c.order_id == waiting.id)) == 2


async def test_record_messages_of_an_unknown_order_still_raises(shop):
    with pytest.raises(OrderNotFound):
        await shop.orders.record_messages("no-such-order", [_code(1)])


async def test_one_sms_twice_in_a_batch_is_one_message(shop):
    _p, (order,) = await _orders(shop, 1)
    twice = _code(7)
    same_text_other_id = _code(7, mid="webhook:x")
    views = await shop.orders.record_many([(order.id, [twice, twice]), (order.id, [twice])])
    assert [v.status for v in views] == ["completed", "completed"]
    await shop.orders.record_many([(order.id, [same_text_other_id])])
    assert len(await _rows(shop.db, order_messages, order_messages.c.order_id == order.id)) == 1
    assert len(await _rows(shop.db, outbox_t, outbox_t.c.order_id == order.id)) == 1


async def test_statements_do_not_grow_with_the_batch_beyond_one_cas_per_capture(shop):
    _p, bought = await _orders(shop, 40, users=4)
    with StatementCounter(shop.db) as small:
        await shop.orders.record_many([(o.id, [_code(i)]) for i, o in enumerate(bought[:2])])
    with StatementCounter(shop.db) as large:
        await shop.orders.record_many([(o.id, [_code(i)]) for i, o in enumerate(bought[2:], 2)])
    assert large.count - small.count == len(bought[2:]) - 2  # only the compare-and-sets grow
    assert large.count <= len(bought[2:]) + 16


@pytest.mark.parametrize("rounds", [6])
async def test_cancel_racing_a_batch_is_one_or_the_other_for_its_order(shop, rounds):
    people, bought = await _orders(shop, 4 * rounds, users=4)
    for r in range(rounds):
        group = bought[4 * r : 4 * r + 4]
        victim = group[r % 4]
        results = await asyncio.gather(
            shop.orders.cancel(victim.id, user_id=victim.user_id),
            shop.orders.record_many([(o.id, [_code(100 * r + i)]) for i, o in enumerate(group)]),
            return_exceptions=True,
        )
        assert [
            r for r in results if isinstance(r, BaseException) and not isinstance(r, OrderStateConflict)
        ] == []
        for o in group:
            final = await shop.orders.get_order(o.id)
            kinds = await _resolutions(shop.db, o.hold_transfer_id)
            if o.id == victim.id:
                assert final.status in ("cancelled", "completed")
            else:
                assert final.status == "completed"
            assert kinds == (["void_pending"] if final.status == "cancelled" else ["post_pending"])
            sent = [r["kind"] for r in await _rows(shop.db, outbox_t, outbox_t.c.order_id == o.id)]
            assert sent.count("completed") == (final.status == "completed")
            if final.status == "cancelled":
                assert "code_extra" not in sent


async def test_two_pollers_recording_the_same_orders_capture_each_once(shop):
    """Two scheduler processes (own engines) with the same news for the same orders, in
    opposite order, as after a lease ran out mid-round: each order is captured and notified
    exactly once, and neither batch fails (no deadlock between them)."""
    from core.db.engine import Database
    from core.orders import OrderService

    _p, bought = await _orders(shop, 12, users=4)
    # Many messages each, so that the two multi-row inserts really overlap in time.
    batch = [
        (o.id, [_code(i, mid=f"p-{i}")] + [SmsMessage(f"p-{i}-{j}", None, f"ad {j}") for j in range(20)])
        for i, o in enumerate(bought)
    ]
    twin = OrderService(Database(shop.db.url), shop.clock, shop.providers, shop.settings)
    try:
        await asyncio.gather(shop.orders.record_many(batch), twin.record_many(list(reversed(batch))))
    finally:
        await twin.db.dispose()
    for o in bought:
        assert (await shop.orders.get_order(o.id)).status == "completed"
        assert await _resolutions(shop.db, o.hold_transfer_id) == [ledger.TransferKind.CAPTURE]
        msgs = await _rows(shop.db, order_messages, order_messages.c.order_id == o.id)
        assert len(msgs) == 21 and [m["code"] for m in msgs if m["charged"]] == [msgs[0]["code"]]
        notes = await _rows(shop.db, outbox_t, outbox_t.c.order_id == o.id)
        assert [n["kind"] for n in notes] == ["completed"]


# ------------------------------------------------------------------ the poller


async def test_poller_records_a_round_in_one_transaction(shop):
    _p, bought = await _orders(shop, 10, users=2)
    alpha = shop.providers["alpha"]
    for i, o in enumerate(bought):
        alpha.deliver(o.activation_id, f"{i:06d}")
    batches = []
    real = shop.orders.record_many

    async def spy(items, **kw):
        items = list(items)
        batches.append(len(items))
        return await real(items, **kw)

    shop.orders.record_many = spy
    assert await shop.orders.poll_orders([o.id for o in bought]) == 10
    assert batches == [10]
    async with shop.db.read() as conn:
        done = await conn.scalar(
            select(func.count()).select_from(orders).where(orders.c.status == "completed")
        )
    assert done == 10


async def test_a_batch_that_fails_is_recorded_order_by_order(shop, caplog):
    """One order whose hold was voided behind its back (a broken invariant) makes the batch
    fail whole; the poller then records the others one by one, and that one is left alone."""
    _p, bought = await _orders(shop, 5, users=2)
    alpha = shop.providers["alpha"]
    for i, o in enumerate(bought):
        alpha.deliver(o.activation_id, f"{i:06d}")
    broken = bought[2]
    async with shop.db.begin() as conn:
        await ledger.void_hold(conn, broken.hold_transfer_id, shop.clock.now())
    with caplog.at_level(logging.ERROR, logger="core.orders"):
        assert await shop.orders.poll_orders([o.id for o in bought]) == 4
    assert "recording them one by one" in caplog.text
    for o in bought:
        final = await shop.orders.get_order(o.id)
        assert final.status == ("waiting" if o.id == broken.id else "completed")
    assert await _rows(shop.db, order_messages, order_messages.c.order_id == broken.id) == []
    # Put the books right again for the auditor: the broken order fails with its hold voided.
    async with shop.db.begin() as conn:
        await conn.execute(
            orders.update()
            .where(orders.c.id == broken.id)
            .values(status="failed", closed_at=shop.clock.now(), next_poll_at=None)
        )
