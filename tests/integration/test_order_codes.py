"""An order's number after its first code: open for more codes (free) until Done or the
deadline, then finished upstream exactly once; Another code asks once per tap; the live
timer's redraws are coalesced per message. Races run for real on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core.db.tables import order_events, transfers
from core.db.tables import outbox as outbox_t
from core.errors import OrderNotFound, OrderStateConflict
from core.orders.timer import next_redraw
from core.providers.base import SmsMessage
from core.providers.errors import ProviderUnavailable
from core.reconcile import Reconciler
from tests.integration.orders_support import ScriptedProvider, Shop


@pytest.fixture
async def shop(db, clock):
    s = Shop(db, clock, {"alpha": ScriptedProvider("alpha", clock)})
    await s.setup_catalogue()
    yield s
    await s.assert_books_clean()


async def _buy(shop, user, key="k1", price=100, chat=None):
    quote = await shop.quote(user.id, price=price)
    return await shop.orders.purchase(
        user_id=user.id,
        quote_id=quote,
        idempotency_key=key,
        chat_id=chat,
        message_id=(77 if chat else None),
    )


async def _coded(shop, user, key="k1", code="111111", chat=None):
    order = await _buy(shop, user, key, chat=chat)
    shop.providers["alpha"].deliver(order.activation_id, code)
    return await shop.orders.record_messages(order.id, [SmsMessage("m0", code, f"code {code}")])


async def _count(db, table, *where):
    async with db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def _finishes(shop, order):
    return shop.providers["alpha"].calls.count(("finish", order.activation_id))


def _asks(shop, order):
    return shop.providers["alpha"].calls.count(("another", order.activation_id))


# ------------------------------------------------------------------ the open number


async def test_first_code_captures_and_leaves_the_number_open(shop):
    user = await shop.user(1, funds=500)
    order = await _coded(shop, user)
    assert order.status == "completed" and order.upstream_state == "active"
    await shop.orders.drain_background()
    assert _finishes(shop, order) == 0
    assert (await shop.wallet(user)).balance == 400


async def test_two_codes_one_charge_then_done_finishes_once(shop):
    user = await shop.user(1, funds=500)
    order = await _coded(shop, user)
    asked = await shop.orders.request_another_code(order.id, user_id=user.id)
    assert not asked.already and _asks(shop, order) == 1
    await shop.orders.record_messages(order.id, [SmsMessage("m1", "222222", "code 222222")])
    assert await _count(shop.db, outbox_t, outbox_t.c.kind == "code_extra") == 1
    done = await shop.orders.done(order.id, user_id=user.id)
    assert not done.already and done.order.upstream_state == "finish_pending"
    await shop.orders.drain_background()
    assert (await shop.orders.get_order(order.id)).upstream_state == "finished"
    again = await shop.orders.done(order.id, user_id=user.id)
    assert again.already
    await shop.orders.drain_background()
    assert _finishes(shop, order) == 1
    assert (await shop.wallet(user)).balance == 400  # the second code cost nothing


async def test_another_code_double_tap_asks_once(shop):
    user = await shop.user(1, funds=500)
    order = await _coded(shop, user)
    first, second = await asyncio.gather(
        shop.orders.request_another_code(order.id, user_id=user.id),
        shop.orders.request_another_code(order.id, user_id=user.id),
        return_exceptions=True,
    )
    outcomes = sorted(
        "asked"
        if not isinstance(r, BaseException) and not r.already
        else type(r).__name__
        if isinstance(r, BaseException)
        else "already"
        for r in (first, second)
    )
    # The second tap either replays the first (already) or finds it still in flight.
    assert outcomes in (["already", "asked"], ["AlreadyInProgress", "asked"]), outcomes
    assert _asks(shop, order) == 1
    # After the next code arrives, a new tap is a new request.
    await shop.orders.record_messages(order.id, [SmsMessage("m1", "222222", "code 222222")])
    assert not (await shop.orders.request_another_code(order.id, user_id=user.id)).already
    assert _asks(shop, order) == 2


async def test_another_code_refused_by_the_provider_can_be_tried_again(shop):
    user = await shop.user(1, funds=500)
    order = await _coded(shop, user)
    alpha = shop.providers["alpha"]
    real = alpha.request_another_code

    async def down(activation_id):
        raise ProviderUnavailable("down", provider="alpha")

    alpha.request_another_code = down
    with pytest.raises(ProviderUnavailable):
        await shop.orders.request_another_code(order.id, user_id=user.id)
    alpha.request_another_code = real
    assert not (await shop.orders.request_another_code(order.id, user_id=user.id)).already


async def test_bad_input_changes_nothing(shop, clock):
    user = await shop.user(1, funds=500)
    other = await shop.user(2, funds=500)
    waiting = await _buy(shop, user, "w")
    with pytest.raises(OrderStateConflict):
        await shop.orders.done(waiting.id, user_id=user.id)  # no code yet
    with pytest.raises(OrderStateConflict):
        await shop.orders.request_another_code(waiting.id, user_id=user.id)
    coded = await _coded(shop, user, "c")
    with pytest.raises(OrderNotFound):
        await shop.orders.done(coded.id, user_id=other.id)  # someone else's order
    with pytest.raises(OrderNotFound):
        await shop.orders.request_another_code(coded.id, user_id=other.id)
    with pytest.raises(OrderNotFound):
        await shop.orders.done("00000000-0000-0000-0000-000000000000", user_id=user.id)
    await shop.orders.done(coded.id, user_id=user.id)
    with pytest.raises(OrderStateConflict):  # Another code on a closed number
        await shop.orders.request_another_code(coded.id, user_id=user.id)
    await shop.orders.drain_background()
    assert (await shop.orders.get_order(waiting.id)).status == "waiting"
    assert _asks(shop, coded) == 0 and _finishes(shop, coded) == 1
    assert (await shop.wallet(user)).available == 500 - 100 - 100  # one held, one paid


async def test_deadline_finishes_once_and_stops_polling(shop, clock):
    user = await shop.user(1, funds=500)
    order = await _coded(shop, user)
    assert await shop.orders.finish_due() == 0
    clock.set(order.expires_at)
    assert await shop.orders.finish_due() == 1
    assert await shop.orders.finish_due() == 0
    after = await shop.orders.get_order(order.id)
    assert after.upstream_state == "finished" and _finishes(shop, order) == 1
    with pytest.raises(OrderStateConflict):
        await shop.orders.request_another_code(order.id, user_id=user.id)
    assert (await shop.orders.done(order.id, user_id=user.id)).already


async def test_a_crash_before_the_finish_is_taken_over_by_the_retry_job(shop, clock):
    user = await shop.user(1, funds=500)
    order = await _coded(shop, user)
    alpha = shop.providers["alpha"]
    real = alpha.finish

    async def crash(activation_id):
        raise asyncio.CancelledError  # the process stopped before the provider answered

    alpha.finish = crash
    await shop.orders.done(order.id, user_id=user.id)
    await shop.orders.drain_background()
    alpha.finish = real
    assert (await shop.orders.get_order(order.id)).upstream_state == "finish_pending"
    assert await shop.orders.retry_upstream() == 0  # the direct attempt's grace
    clock.advance(61)
    assert await shop.orders.retry_upstream() == 1
    assert (await shop.orders.get_order(order.id)).upstream_state == "finished"
    assert alpha.calls.count(("finish", order.activation_id)) == 1


async def test_staff_refund_closes_the_open_number(shop):
    user = await shop.user(1, funds=500)
    order = await _coded(shop, user)
    await shop.orders.staff_refund(order.id, actor="staff:1", reason="code did not work")
    assert await shop.orders.retry_upstream() == 1
    assert (await shop.orders.get_order(order.id)).upstream_state == "finished"


async def test_open_number_is_not_an_orphan_but_a_late_one_is_reported(shop, clock):
    user = await shop.user(1, funds=500)
    order = await _coded(shop, user)
    reconciler = Reconciler(
        db=shop.db, clock=clock, settings=shop.settings, providers=shop.providers, orders=shop.orders
    )
    report = await reconciler.run(execute=False)
    assert [f.code for f in report.findings] == []
    clock.set(order.expires_at + timedelta(seconds=600))
    report = await reconciler.run(execute=True)
    assert "open_number_overdue" in [f.code for f in report.findings]
    assert (await shop.orders.get_order(order.id)).upstream_state == "finished"
    assert _finishes(shop, order) == 1


# -------------------------------------------------------------------------- races


@pytest.mark.parametrize("rounds", [8])
async def test_done_racing_the_deadline_finishes_once(shop, clock, rounds):
    user = await shop.user(1, funds=100 * rounds)
    for i in range(rounds):
        order = await _coded(shop, user, key=f"k{i}")
        clock.set(order.expires_at)
        results = await asyncio.gather(
            shop.orders.done(order.id, user_id=user.id),
            shop.orders.finish_due(),
            return_exceptions=True,
        )
        done, due = results
        assert not isinstance(done, BaseException) and not isinstance(due, BaseException), results
        assert (not done.already) + due == 1  # exactly one of them closed the number
        await shop.orders.drain_background()
        assert _finishes(shop, order) == 1
        async with shop.db.read() as conn:
            marks = await conn.scalar(
                select(func.count())
                .select_from(order_events)
                .where(order_events.c.order_id == order.id, order_events.c.event == "finish")
            )
        assert marks == 1
        clock.advance(1)


@pytest.mark.parametrize("rounds", [8])
async def test_another_code_racing_done_is_one_or_the_other(shop, rounds):
    user = await shop.user(1, funds=100 * rounds)
    for i in range(rounds):
        order = await _coded(shop, user, key=f"k{i}")
        another, done = await asyncio.gather(
            shop.orders.request_another_code(order.id, user_id=user.id),
            shop.orders.done(order.id, user_id=user.id),
            return_exceptions=True,
        )
        assert not isinstance(done, BaseException) and not done.already, done
        if isinstance(another, BaseException):
            assert isinstance(another, OrderStateConflict), another
            assert _asks(shop, order) == 0  # Done came first: nothing was asked
        else:
            assert not another.already and _asks(shop, order) == 1
        await shop.orders.drain_background()
        final = await shop.orders.get_order(order.id)
        assert final.status == "completed" and final.upstream_state == "finished"
        assert _finishes(shop, order) == 1
    assert (await shop.wallet(user)).balance == 0


@pytest.mark.parametrize("rounds", [8])
async def test_cancel_racing_a_late_code_is_one_or_the_other(shop, rounds):
    user = await shop.user(1, funds=100 * rounds)
    for i in range(rounds):
        order = await _buy(shop, user, key=f"k{i}")
        code = SmsMessage("m0", "424242", "code 424242")
        cancel, recorded = await asyncio.gather(
            shop.orders.cancel(order.id, user_id=user.id),
            shop.orders.record_messages(order.id, [code]),
            return_exceptions=True,
        )
        assert not isinstance(recorded, BaseException), recorded
        assert not isinstance(cancel, BaseException) or isinstance(cancel, OrderStateConflict), cancel
        await shop.orders.drain_background()
        final = await shop.orders.get_order(order.id)
        async with shop.db.read() as conn:
            kinds = (
                await conn.scalars(
                    select(transfers.c.kind).where(transfers.c.pending_id == order.hold_transfer_id)
                )
            ).all()
        if final.status == "cancelled":
            assert kinds == ["void_pending"] and _finishes(shop, order) == 0
        else:
            # The code won: paid once, the number stays open, never cancelled upstream.
            assert final.status == "completed" and kinds == ["post_pending"]
            assert final.upstream_state == "active"
            assert ("cancel", order.activation_id) not in shop.providers["alpha"].calls


# -------------------------------------------------------------------- the timer


async def test_redraws_are_aligned_coalesced_and_remind_once(shop, clock):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user, chat=4242)
    assert await shop.orders.redraw_due() == 0  # not within the first interval
    clock.advance(60)
    assert await shop.orders.redraw_due() == 1
    assert await shop.orders.redraw_due() == 0
    # Not sent yet: the next redraw replaces the pending one instead of queueing another.
    clock.set(next_redraw(order.expires_at, clock.now(), 60))
    assert await shop.orders.redraw_due() == 1
    rows = await _count(shop.db, outbox_t, outbox_t.c.kind == "order_redraw")
    assert rows == 1
    # Run to the deadline: exactly one reminder, at five minutes left.
    while clock.now() < order.expires_at:
        clock.advance(5)
        await shop.orders.redraw_due()
    assert await _count(shop.db, outbox_t, outbox_t.c.kind == "order_reminder") == 1
    async with shop.db.read() as conn:
        payload = await conn.scalar(select(outbox_t.c.payload).where(outbox_t.c.kind == "order_reminder"))
    assert payload["minutes_left"] == 5
    await shop.orders.expire_due()


def test_next_redraw_lands_on_whole_minutes_before_the_deadline(clock):
    deadline = clock.now() + timedelta(minutes=20)
    assert next_redraw(deadline, clock.now(), 60) == deadline - timedelta(minutes=19)
    later = clock.now() + timedelta(seconds=75)
    assert next_redraw(deadline, later, 60) == deadline - timedelta(minutes=18)
    assert next_redraw(deadline, deadline - timedelta(seconds=30), 60) == deadline
