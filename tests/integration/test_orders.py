"""Every order path against a real database, with scripted providers.

Each test ends by running the ledger auditor: whatever happened, the books must balance.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core import outbox
from core.db.tables import audit_log, order_messages, orders, transfers
from core.db.tables import outbox as outbox_t
from core.errors import (
    AlreadyInProgress,
    InsufficientFunds,
    NoProviderAvailable,
    OrderNotFound,
    OrderStateConflict,
    QuoteExpired,
)
from core.providers.base import SmsMessage
from core.providers.errors import EarlyCancelDenied, OutOfStock, ProviderUnavailable
from tests.integration.orders_support import AppliedButUnknown, Crash, ScriptedProvider, Shop


@pytest.fixture
async def shop(db, clock):
    s = Shop(db, clock, {"alpha": ScriptedProvider("alpha", clock)})
    await s.setup_catalogue()
    yield s
    await s.assert_books_clean()


@pytest.fixture
async def duo(db, clock):
    s = Shop(
        db,
        clock,
        {
            "alpha": ScriptedProvider("alpha", clock, cost=40),
            "beta": ScriptedProvider("beta", clock, cost=60),
        },
    )
    await s.setup_catalogue()
    yield s
    await s.assert_books_clean()


async def _buy(shop, user, key="k1", price=100):
    quote = await shop.quote(user.id, price=price)
    return await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key=key)


async def _count(db, table, *where):
    async with db.read() as conn:
        return await conn.scalar(select(func.count()).select_from(table).where(*where))


# ------------------------------------------------------------------ purchase and code


async def test_buy_then_code_captures_once(shop):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    assert order.status == "waiting" and order.phone and order.provider == "alpha"
    wallet = await shop.wallet(user)
    assert (wallet.balance, wallet.held, wallet.available) == (500, 100, 400)

    shop.providers["alpha"].deliver(order.activation_id, "123456")
    assert await shop.orders.poll_orders([order.id]) == 1
    done = await shop.orders.get_order(order.id)
    assert done.status == "completed" and done.code == "123456"
    wallet = await shop.wallet(user)
    assert (wallet.balance, wallet.held, wallet.available) == (400, 0, 400)
    assert await _count(shop.db, outbox_t, outbox_t.c.kind == "completed") == 1

    # Polling again records nothing new and charges nothing more.
    assert await shop.orders.poll_orders([order.id]) == 0
    assert (await shop.wallet(user)).balance == 400


async def test_later_codes_are_recorded_and_forwarded_without_charge(shop):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    prov = shop.providers["alpha"]
    prov.deliver(order.activation_id, "111111")
    await shop.orders.poll_orders([order.id])
    prov.deliver(order.activation_id, "222222")
    await shop.orders.poll_orders([order.id])
    async with shop.db.read() as conn:
        charged = (
            await conn.execute(
                select(order_messages.c.code, order_messages.c.charged).order_by(order_messages.c.id)
            )
        ).all()
    assert charged == [("111111", True), ("222222", False)]
    assert await _count(shop.db, outbox_t, outbox_t.c.kind == "code_extra") == 1
    assert (await shop.wallet(user)).balance == 400


async def test_same_key_buys_once(shop):
    user = await shop.user(1, funds=500)
    quote = await shop.quote(user.id)
    first = await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key="tap")
    again = await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key="tap")
    assert again.id == first.id
    assert shop.providers["alpha"].rents() == 1
    assert (await shop.wallet(user)).held == 100


async def test_concurrent_taps_on_one_button_buy_once(shop):
    user = await shop.user(1, funds=500)
    quote = await shop.quote(user.id)

    async def tap():
        try:
            return (
                await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key="tg:1:10:buy")
            ).id
        except AlreadyInProgress:
            return "working on it"

    results = await asyncio.gather(*(tap() for _ in range(8)))
    ids = {r for r in results if r != "working on it"}
    assert len(ids) == 1
    assert shop.providers["alpha"].rents() == 1
    assert await _count(shop.db, orders) == 1
    assert (await shop.wallet(user)).held == 100


async def test_fifty_concurrent_purchases_against_a_wallet_for_seven(shop):
    user = await shop.user(1, funds=700)
    quote = await shop.quote(user.id, price=100)

    async def attempt(i):
        try:
            await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key=f"k{i}")
            return "ok"
        except InsufficientFunds:
            return "poor"

    results = await asyncio.gather(*(attempt(i) for i in range(50)))
    assert results.count("ok") == 7 and results.count("poor") == 43
    wallet = await shop.wallet(user)
    assert wallet.available == 0 and wallet.held == 700
    assert await _count(shop.db, orders) == 7


async def test_insufficient_funds_changes_nothing(shop):
    user = await shop.user(1, funds=50)
    with pytest.raises(InsufficientFunds) as err:
        await _buy(shop, user)
    assert err.value.missing == 50
    assert await _count(shop.db, orders) == 0
    assert await _count(shop.db, transfers, transfers.c.kind == "pending") == 0
    assert shop.providers["alpha"].rents() == 0


async def test_expired_quote_is_refused_before_money_moves(shop, clock):
    user = await shop.user(1, funds=500)
    quote = await shop.quote(user.id, ttl=60)
    clock.advance(61)
    with pytest.raises(QuoteExpired):
        await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key="k")
    assert (await shop.wallet(user)).available == 500


async def test_foreign_order_looks_unknown(shop):
    alice, bob = await shop.user(1, funds=500), await shop.user(2, funds=500)
    order = await _buy(shop, alice)
    with pytest.raises(OrderNotFound):
        await shop.orders.cancel(order.id, user_id=bob.id)
    assert (await shop.orders.get_order(order.id)).status == "waiting"


# --------------------------------------------------------------------- failover


async def test_failover_inside_one_hold(duo):
    user = await duo.user(1, funds=500)
    duo.providers["alpha"].rent_script = [OutOfStock("none left")]
    order = await _buy(duo, user)
    assert order.status == "waiting" and order.provider == "beta"
    assert duo.providers["alpha"].rents() == 0 and duo.providers["beta"].rents() == 1
    assert await _count(duo.db, transfers, transfers.c.kind == "pending") == 1
    assert (await duo.wallet(user)).held == 100


async def test_all_providers_down_charges_nothing(duo):
    user = await duo.user(1, funds=500)
    duo.providers["alpha"].rent_script = [ProviderUnavailable("503")]
    duo.providers["beta"].rent_script = [ProviderUnavailable("timeout")]
    with pytest.raises(NoProviderAvailable) as err:
        await _buy(duo, user)
    assert err.value.reason == "unavailable"
    order = await duo.orders.get_order(err.value.order_id)
    assert order.status == "failed"
    wallet = await duo.wallet(user)
    assert (wallet.balance, wallet.held, wallet.available) == (500, 0, 500)


async def test_offers_above_the_price_are_never_rented(db, clock):
    shop = Shop(db, clock, {"alpha": ScriptedProvider("alpha", clock, cost=150)})
    await shop.setup_catalogue()
    user = await shop.user(1, funds=500)
    with pytest.raises(NoProviderAvailable):
        await _buy(shop, user, price=100)
    assert shop.providers["alpha"].rents() == 0
    assert (await shop.wallet(user)).available == 500
    await shop.assert_books_clean()


# ------------------------------------------------------------------------ cancel


async def test_cancel_refunds_at_once_and_cancels_upstream(shop):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    result = await shop.orders.cancel(order.id, user_id=user.id)
    assert result.refunded == 100 and not result.already
    assert result.order.status == "cancelled" and result.order.upstream_state == "cancel_pending"
    assert (await shop.wallet(user)).available == 500
    await shop.orders.drain_background()  # the upstream cancel runs after the answer
    assert (await shop.orders.get_order(order.id)).upstream_state == "cancelled"


async def test_cancel_answers_after_the_refund_not_after_the_provider(shop, clock):
    """The user's cancel returns once the refund commits; the provider's cancel, which may
    take up to its read timeout, runs after it and exactly once."""
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    prov = shop.providers[order.provider]
    prov.cancel_gate = asyncio.Event()
    # A guard against hanging forever, not a timing assumption: the fixed cancel never waits.
    result = await asyncio.wait_for(shop.orders.cancel(order.id, user_id=user.id), 10)
    assert result.refunded == 100 and result.order.status == "cancelled"
    assert result.order.upstream_state == "cancel_pending"
    assert (await shop.wallet(user)).available == 500
    await prov.cancel_started.wait()  # the provider has the call and holds it
    assert not prov.cancel_gate.is_set()
    assert (await shop.orders.get_order(order.id)).upstream_state == "cancel_pending"
    clock.advance(30)
    assert await shop.orders.retry_upstream() == 0  # the direct attempt is still running
    prov.cancel_gate.set()
    await shop.orders.drain_background()
    assert (await shop.orders.get_order(order.id)).upstream_state == "cancelled"
    clock.advance(3600)
    assert await shop.orders.retry_upstream() == 0
    assert [c for c in prov.calls if c[0] == "cancel"] == [("cancel", order.activation_id)]
    await shop.assert_books_clean()


async def test_the_final_check_asks_the_provider_in_the_callers_own_task(shop):
    """``wait_for`` ran the final check in a task of its own, and each hop to and from it
    waited out a full turn of a busy event loop: cancel's p99 in bench.lifecycle was
    seconds while the provider answered at once. The check runs in the caller's task."""
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    prov = shop.providers[order.provider]
    asked_from: list[asyncio.Task | None] = []
    real_status = prov.status

    async def status(activation_id):
        asked_from.append(asyncio.current_task())
        return await real_status(activation_id)

    prov.status = status
    result = await shop.orders.cancel(order.id, user_id=user.id)
    assert result.order.status == "cancelled"
    assert asked_from == [asyncio.current_task()]


async def test_double_cancel_refunds_once(shop):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    first, second = await asyncio.gather(
        shop.orders.cancel(order.id, user_id=user.id), shop.orders.cancel(order.id, user_id=user.id)
    )
    assert sorted([first.refunded, second.refunded]) == [0, 100]
    assert (await shop.wallet(user)).available == 500
    assert await _count(shop.db, transfers, transfers.c.kind == "void_pending") == 1


async def test_cancel_finds_a_late_code_and_completes_instead(shop):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    shop.providers["alpha"].deliver(order.activation_id, "999999")
    result = await shop.orders.cancel(order.id, user_id=user.id)
    assert result.completed_instead and result.refunded == 0
    assert result.order.status == "completed"
    assert (await shop.wallet(user)).balance == 400


@pytest.mark.parametrize("rounds", [10])
async def test_cancel_racing_a_code_is_one_or_the_other(shop, rounds):
    user = await shop.user(1, funds=100 * rounds)
    for i in range(rounds):
        order = await _buy(shop, user, key=f"k{i}")
        code = SmsMessage("m0", "424242", "code 424242")
        results = await asyncio.gather(
            shop.orders.cancel(order.id, user_id=user.id),
            shop.orders.record_messages(order.id, [code]),
            return_exceptions=True,
        )
        assert [
            r for r in results if isinstance(r, BaseException) and not isinstance(r, OrderStateConflict)
        ] == []
        final = await shop.orders.get_order(order.id)
        assert final.status in ("cancelled", "completed")
        async with shop.db.read() as conn:
            kinds = (
                await conn.scalars(
                    select(transfers.c.kind).where(transfers.c.pending_id == order.hold_transfer_id)
                )
            ).all()
        assert kinds == (["void_pending"] if final.status == "cancelled" else ["post_pending"])


async def test_code_after_cancel_is_kept_but_never_delivered(shop):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    await shop.orders.cancel(order.id, user_id=user.id)
    await shop.orders.record_messages(order.id, [SmsMessage("late", "555555", "late")])
    assert (await shop.orders.get_order(order.id)).status == "cancelled"
    assert await _count(shop.db, outbox_t, outbox_t.c.order_id == order.id) == 0
    assert (await shop.wallet(user)).available == 500


async def test_early_cancel_denial_is_retried_later(shop, clock):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    prov = shop.providers["alpha"]
    prov.cancel_script = [EarlyCancelDenied("too soon", retry_at=clock.now() + timedelta(minutes=2))]
    result = await shop.orders.cancel(order.id, user_id=user.id)
    assert result.refunded == 100  # the user is refunded at once regardless
    await shop.orders.drain_background()
    assert (await shop.orders.get_order(order.id)).upstream_state == "cancel_pending"
    assert await shop.orders.retry_upstream() == 0  # not due yet
    clock.advance(121)
    assert await shop.orders.retry_upstream() == 1
    assert (await shop.orders.get_order(order.id)).upstream_state == "cancelled"


async def test_user_cannot_cancel_completed(shop):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    shop.providers["alpha"].deliver(order.activation_id, "1")
    await shop.orders.poll_orders([order.id])
    with pytest.raises(OrderStateConflict):
        await shop.orders.cancel(order.id, user_id=user.id)
    assert (await shop.wallet(user)).balance == 400


# ------------------------------------------------------------------ expiry, failure


async def test_expiry_refunds_and_notifies(shop, clock):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    assert await shop.orders.expire_due() == 0
    clock.set(order.expires_at + timedelta(seconds=1))
    assert await shop.orders.expire_due() == 1
    final = await shop.orders.get_order(order.id)
    assert final.status == "expired" and final.upstream_state == "cancelled"
    assert (await shop.wallet(user)).available == 500
    assert await _count(shop.db, outbox_t, outbox_t.c.kind == "expired") == 1
    assert await shop.orders.expire_due() == 0


async def test_expiry_final_check_captures_a_last_second_code(shop, clock):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    shop.providers["alpha"].deliver(order.activation_id, "777777")
    clock.set(order.expires_at + timedelta(seconds=1))
    assert await shop.orders.expire_due() == 0
    assert (await shop.orders.get_order(order.id)).status == "completed"
    assert (await shop.wallet(user)).balance == 400


async def test_provider_closing_the_activation_fails_and_refunds(shop):
    from core.providers.base import ActivationState

    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    shop.providers["alpha"].activations[order.activation_id].state = ActivationState.CANCELLED
    await shop.orders.poll_orders([order.id])
    assert (await shop.orders.get_order(order.id)).status == "failed"
    assert (await shop.wallet(user)).available == 500


# ----------------------------------------------------------------------- recovery


async def test_lost_answer_then_recovery_with_idempotent_provider(db, clock):
    shop = Shop(db, clock, {"tv": ScriptedProvider("tv", clock, idempotent=True)})
    await shop.setup_catalogue()
    user = await shop.user(1, funds=500)
    shop.providers["tv"].rent_script = [AppliedButUnknown("timeout after send")]
    order = await _buy(shop, user)
    assert order.status == "reserving"
    assert await shop.orders.recover_reserving() == 0  # too young
    clock.advance(shop.settings.RECOVERY_AFTER_SECONDS + 1)
    assert await shop.orders.recover_reserving() == 1
    final = await shop.orders.get_order(order.id)
    assert final.status == "waiting"
    assert shop.providers["tv"].rents() == 1  # the same rental, not a second one
    assert await _count(db, outbox_t, outbox_t.c.kind == "waiting") == 1  # "your number is ready"
    await shop.assert_books_clean()


async def test_recovery_finds_the_activation_among_active_ones(shop, clock):
    user = await shop.user(1, funds=500)
    shop.providers["alpha"].rent_script = [AppliedButUnknown("reset")]
    order = await _buy(shop, user)
    clock.advance(shop.settings.RECOVERY_AFTER_SECONDS + 1)
    await shop.orders.recover_reserving()
    final = await shop.orders.get_order(order.id)
    assert final.status == "waiting" and final.activation_id in shop.providers["alpha"].activations


async def test_recovery_without_a_trace_fails_and_refunds(shop, clock):
    user = await shop.user(1, funds=500)
    shop.providers["alpha"].rent_script = [ProviderUnavailable("x")]
    shop.providers["alpha"].rent_script = [OutOfStock("gone")]
    from core.providers.errors import OutcomeUnknown

    shop.providers["alpha"].rent_script = [OutcomeUnknown("lost before sending")]
    order = await _buy(shop, user)
    assert order.status == "reserving"
    clock.advance(shop.settings.RECOVERY_AFTER_SECONDS + 1)
    await shop.orders.recover_reserving()
    assert (await shop.orders.get_order(order.id)).status == "failed"
    assert (await shop.wallet(user)).available == 500


async def test_crash_during_rent_then_retry_of_same_key_does_not_buy_again(shop, clock):
    user = await shop.user(1, funds=500)
    quote = await shop.quote(user.id)
    shop.providers["alpha"].rent_script = [Crash()]
    with pytest.raises(Crash):
        await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key="tap")
    with pytest.raises(AlreadyInProgress):
        await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key="tap")
    clock.advance(shop.settings.RECOVERY_AFTER_SECONDS + 1)
    with pytest.raises(AlreadyInProgress):  # still reserving: recovery's job, not the tap's
        await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key="tap")
    await shop.orders.recover_reserving()
    again = await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key="tap")
    assert again.status == "failed"
    assert await _count(shop.db, orders) == 1
    assert (await shop.wallet(user)).available == 500


async def test_safety_net_settles_holds_past_timeout_through_the_order(shop, clock):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    clock.advance(shop.settings.ORDER_MAX_TTL_SECONDS + shop.settings.HOLD_GRACE_SECONDS + 1)
    assert await shop.orders.resolve_overdue_holds() == 1
    assert (await shop.orders.get_order(order.id)).status == "expired"
    assert (await shop.wallet(user)).available == 500


# -------------------------------------------------------------------- staff refund


async def test_staff_refund_of_completed_order_once(shop):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    shop.providers["alpha"].deliver(order.activation_id, "1")
    await shop.orders.poll_orders([order.id])
    results = await asyncio.gather(
        *(shop.orders.staff_refund(order.id, actor="staff:ann", reason="bad code") for _ in range(3)),
        return_exceptions=True,
    )
    assert [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, OrderStateConflict)
    ] == []
    assert (await shop.orders.get_order(order.id)).status == "refunded"
    assert (await shop.wallet(user)).balance == 500
    assert await _count(shop.db, transfers, transfers.c.code == "refund") == 1
    assert await _count(shop.db, audit_log, audit_log.c.action == "order.refund") == 1


async def test_staff_refund_of_open_order_is_refused(shop):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    with pytest.raises(OrderStateConflict):
        await shop.orders.staff_refund(order.id, actor="staff:ann", reason="x")
    assert (await shop.wallet(user)).held == 100


async def test_list_orders_keyset_pages(shop, clock):
    user = await shop.user(1, funds=1000)
    other = await shop.user(2, funds=1000)
    for i in range(5):
        await _buy(shop, user, key=f"k{i}")
        clock.advance(1)
    theirs = await _buy(shop, other, key="o1")
    first = await shop.orders.list_orders(user_id=user.id, limit=3)
    rest = await shop.orders.list_orders(
        user_id=user.id, limit=3, before=(first[-1].created_at, first[-1].id)
    )
    assert len(first) == 3 and len(rest) == 2
    assert {o.user_id for o in first + rest} == {user.id}
    assert not {o.id for o in first} & {o.id for o in rest}
    assert first[0].created_at > rest[-1].created_at
    everyone = await shop.orders.list_orders(limit=10)
    assert len(everyone) == 6 and everyone[0].id == theirs.id  # newest first
    await shop.orders.cancel(theirs.id, user_id=other.id)
    assert [o.id for o in await shop.orders.list_orders(status="cancelled")] == [theirs.id]
    assert await shop.orders.list_orders(user_id=user.id, status="cancelled") == []


async def test_outbox_rows_carry_what_the_bot_needs(shop, clock):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    shop.providers["alpha"].deliver(order.activation_id, "31337", "WhatsApp code 31337")
    await shop.orders.poll_orders([order.id])
    [msg] = await outbox.claim_batch(shop.db, owner="t", now=clock.now())
    assert msg.chat_id == 1 and msg.kind == "completed"
    assert msg.payload["code"] == "31337" and msg.payload["text"] == "WhatsApp code 31337"
    assert msg.payload["phone"] == order.phone


async def test_the_same_sms_under_two_ids_is_recorded_and_forwarded_once(shop):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    await shop.orders.record_messages(order.id, [SmsMessage("webhook:digest", "4242", "code 4242")])
    await shop.orders.record_messages(order.id, [SmsMessage("provider-17", "4242", "code 4242")])
    assert await _count(shop.db, order_messages, order_messages.c.order_id == order.id) == 1
    assert await _count(shop.db, outbox_t, outbox_t.c.order_id == order.id) == 1
    assert (await shop.wallet(user)).balance == 400


async def test_staff_cancel_is_audited_with_the_refund(shop):
    user = await shop.user(1, funds=500)
    order = await _buy(shop, user)
    result = await shop.orders.cancel(order.id, actor="staff:ann", reason="customer asked")
    assert result.refunded == 100
    await shop.orders.cancel(order.id, actor="staff:ann", reason="customer asked")
    async with shop.db.read() as conn:
        rows = (
            await conn.execute(
                select(audit_log.c.actor, audit_log.c.reason).where(audit_log.c.action == "order.cancel")
            )
        ).all()
    assert rows == [("staff:ann", "customer asked")]
    assert await _count(shop.db, outbox_t, outbox_t.c.kind == "cancelled") == 1
