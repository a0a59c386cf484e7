"""Promo codes, referral rewards and Stars refunds against a real database, races included.

Every race runs real concurrent transactions (one ``db.begin()`` per task) on SQLite and
PostgreSQL, checks every task's result, then the ledger invariants."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from core import ledger, referrals
from core.db.tables import promo_redemptions, referral_rewards, star_refunds
from core.errors import InsufficientFunds, InvalidInput, NotFound
from core.invariants import check_invariants
from core.promo import Outcome, PromoCodeExists, Promos
from core.referrals import Attribution
from core.star_refunds import StarRefund, StarRefundRejected, StarRefunds, StarRefundUnavailable, Status
from core.system_accounts import MARKETING
from core.users import get_or_create_user
from core.wallets import Wallets


async def _gather(jobs: list[Any]) -> list[Any]:
    gate = asyncio.Event()

    async def gated(job: Any) -> Any:
        await gate.wait()
        return await job()

    tasks = [asyncio.create_task(gated(j)) for j in jobs]
    await asyncio.sleep(0)
    gate.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


async def _available(db, telegram_id: int) -> int:
    return (await Wallets(db, SimpleNamespace()).show(telegram_id)).available  # type: ignore[arg-type]


@pytest.fixture
def promos(db, clock) -> Promos:
    return Promos(db, clock)


async def _marketing_balance(db) -> int:
    async with db.read() as conn:
        return (await ledger.balance_of(conn, await ledger.system_account(conn, MARKETING))).balance


async def _sound(db, clock) -> None:
    assert await check_invariants(db, clock.now()) == []


# --- promo codes ---------------------------------------------------------------------------


async def test_redeem_credits_once_and_refuses_clearly(db, clock, promos):
    await promos.create("WELCOME5", amount=500, max_uses=3, actor="cli")
    first = await promos.redeem(101, "welcome5")
    assert (first.outcome, first.amount, first.available) == (Outcome.CREDITED, 500, 500)
    again = await promos.redeem(101, " WELCOME5 ")
    assert (again.outcome, again.amount) == (Outcome.ALREADY, 0)
    assert (await promos.redeem(101, "NOPE123")).outcome == Outcome.UNKNOWN
    assert (await promos.redeem(101, "no!")).outcome == Outcome.INVALID
    assert await _available(db, 101) == 500
    assert await _marketing_balance(db) == -500
    await _sound(db, clock)


async def test_expiry_budget_and_disable(db, clock, promos):
    await promos.create(
        "SOON", amount=100, max_uses=10, expires_at=clock.now() + timedelta(hours=1), actor="t"
    )
    await promos.create("TIGHT", amount=100, max_uses=10, budget=250, actor="t")
    assert (await promos.redeem(1, "TIGHT")).outcome == Outcome.CREDITED
    assert (await promos.redeem(2, "TIGHT")).outcome == Outcome.CREDITED
    assert (await promos.redeem(3, "TIGHT")).outcome == Outcome.USED_UP  # 300 > budget 250
    clock.advance(3601)
    assert (await promos.redeem(4, "SOON")).outcome == Outcome.EXPIRED
    await promos.create("OFF", amount=100, max_uses=10, actor="t")
    assert await promos.disable("off", actor="t") is True
    assert await promos.disable("OFF", actor="t") is False
    assert (await promos.redeem(5, "OFF")).outcome == Outcome.DISABLED
    async with db.read() as conn:  # refusals leave no redemption row behind
        assert await conn.scalar(select(func.count()).select_from(promo_redemptions)) == 2
    await _sound(db, clock)


async def test_create_refuses_bad_input(db, clock, promos):
    await promos.create("ONCE", amount=1, max_uses=1, actor="t")
    with pytest.raises(PromoCodeExists):
        await promos.create("once", amount=1, max_uses=1, actor="t")
    for kwargs in (
        dict(amount=0, max_uses=1),
        dict(amount=1, max_uses=0),
        dict(amount=100, max_uses=2, budget=50),
        dict(amount=1, max_uses=1, expires_at=clock.now() - timedelta(seconds=1)),
    ):
        with pytest.raises(InvalidInput):
            await promos.create("OTHER", actor="t", **kwargs)
    with pytest.raises(InvalidInput):
        await promos.create("x", amount=1, max_uses=1, actor="t")
    with pytest.raises(NotFound):
        await promos.disable("MISSING", actor="t")


async def test_fifty_users_race_for_ten_uses(db, clock, promos):
    await promos.create("RACE10", amount=100, max_uses=10, actor="t")
    results = await _gather([lambda uid=uid: promos.redeem(5000 + uid, "RACE10") for uid in range(50)])
    assert not [r for r in results if isinstance(r, BaseException)], results
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.CREDITED) == 10
    assert outcomes.count(Outcome.USED_UP) == 40
    credited = sum(r.amount for r in results)
    assert credited == 1000
    assert await _marketing_balance(db) == -1000
    (code,) = [c for c in await promos.codes() if c.code == "RACE10"]
    assert (code.used, code.spent) == (10, 1000)
    await _sound(db, clock)


async def test_one_user_redeeming_twice_at_once_gets_one(db, clock, promos):
    await promos.create("TWICE", amount=300, max_uses=100, actor="t")
    results = await _gather([lambda: promos.redeem(77, "TWICE") for _ in range(5)])
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sorted(r.outcome for r in results) == sorted([Outcome.CREDITED] + [Outcome.ALREADY] * 4)
    assert await _available(db, 77) == 300
    await _sound(db, clock)


# --- referrals -----------------------------------------------------------------------------


async def _user(db, clock, telegram_id: int, funds: int = 0):
    async with db.begin() as conn:
        user = await get_or_create_user(conn, telegram_id=telegram_id, now=clock.now())
    if funds:
        await Wallets(db, clock).top_up(
            telegram_id, funds, source="telegram_stars", reference=f"c{telegram_id}"
        )
    return user


def _settings(percent: float = 10, days: int = 30) -> Any:
    return SimpleNamespace(REFERRAL_PERCENT=percent, REFERRAL_DAYS=days)


async def test_attribution_only_on_a_new_users_first_start(db, clock):
    alice = await _user(db, clock, 1)
    code = await referrals.code_for(db, alice.id, clock.now())
    assert await referrals.code_for(db, alice.id, clock.now()) == code
    assert await referrals.attribute(db, alice.id, code, clock.now()) == Attribution.SELF
    bob = await _user(db, clock, 2)
    assert await referrals.attribute(db, bob.id, "zzzzzzzz", clock.now()) == Attribution.UNKNOWN
    assert await referrals.attribute(db, bob.id, code, clock.now()) == Attribution.JOINED
    carol = await _user(db, clock, 3)
    carol_code = await referrals.code_for(db, carol.id, clock.now())
    assert await referrals.attribute(db, bob.id, carol_code, clock.now()) == Attribution.ALREADY
    clock.advance(3600)
    dave = await _user(db, clock, 4)
    clock.advance(11 * 60)  # dave has been here a while: an old user opening a link
    assert await referrals.attribute(db, dave.id, code, clock.now()) == Attribution.NOT_NEW
    stats = await referrals.stats(db, alice.id, clock.now())
    assert (stats.code, stats.joined) == (code, 1)


async def _captured_order(db, clock, user, price: int, order_id: str):
    """A purchase hold and its capture, booked as the order service books them."""
    from core.db.tables import orders

    now = clock.now()
    async with db.begin() as conn:
        hold = ledger.derived_id("hold", order_id)
        revenue = await ledger.system_account(conn, ledger.REVENUE, spread=order_id)
        await ledger.create_hold(
            conn,
            id=hold,
            debit=user.wallet_account_id,
            credit=revenue,
            amount=price,
            timeout_at=now + timedelta(hours=1),
            now=now,
            order_id=order_id,
        )
        await conn.execute(
            orders.insert(),
            dict(
                id=order_id,
                user_id=user.id,
                service="whatsapp",
                country="GB",
                price=price,
                status="completed",
                version=1,
                hold_transfer_id=hold,
                upstream_state="finished",
                can_request_another=False,
                upstream_attempts=0,
                created_at=now,
                updated_at=now,
                closed_at=now,
            ),
        )
        await ledger.capture_hold(conn, hold, now)
        order = SimpleNamespace(id=order_id, user_id=user.id, price=price)
        await referrals.reward_capture(conn, order, now, _settings())
        await referrals.reward_capture(conn, order, now, _settings())  # a retried capture: once
    return order


async def _refund(db, clock, order) -> None:
    from sqlalchemy import update

    from core.db.tables import orders, users

    now = clock.now()
    async with db.begin() as conn:
        wallet = await conn.scalar(select(users.c.wallet_account_id).where(users.c.id == order.user_id))
        await ledger.post_transfer(
            conn,
            id=ledger.derived_id("refund", order.id),
            debit=await ledger.system_account(conn, ledger.REVENUE, spread=order.id),
            credit=wallet,
            amount=order.price,
            code="refund",
            order_id=order.id,
            now=now,
        )
        await conn.execute(update(orders).where(orders.c.id == order.id).values(status="refunded"))
        await referrals.reverse_refund(conn, order.id, now)
        await referrals.reverse_refund(conn, order.id, now)  # once per order


async def test_reward_at_capture_and_reversal_never_below_zero(db, clock):
    alice = await _user(db, clock, 11)
    bob = await _user(db, clock, 12)
    assert await referrals.attribute(
        db, bob.id, await referrals.code_for(db, alice.id, clock.now()), clock.now()
    )
    await Wallets(db, clock).top_up(12, 5000, source="telegram_stars", reference="bob1")
    first = await _captured_order(db, clock, bob, 1000, "o-1")
    second = await _captured_order(db, clock, bob, 2000, "o-2")
    assert await _available(db, 11) == 300  # 10 % of 1000 + 2000, once each
    await _refund(db, clock, first)
    assert await _available(db, 11) == 200
    # Alice spends 150 of the 200 before the second order is refunded: only 50 comes back.
    await Wallets(db, clock).debit(11, 150, reason="spent")
    await _refund(db, clock, second)
    assert await _available(db, 11) == 0
    async with db.read() as conn:
        rows = {
            r.order_id: (r.amount, r.reversed, r.written_off)
            for r in (await conn.execute(select(referral_rewards))).all()
        }
    assert rows == {"o-1": (100, 100, 0), "o-2": (200, 50, 150)}
    earned = await referrals.earnings(db)
    assert (earned["earned"], earned["taken_back"], earned["written_off"]) == (300, 150, 150)
    assert await _marketing_balance(db) == -150
    await _sound(db, clock)


async def test_no_reward_after_the_window(db, clock):
    alice = await _user(db, clock, 21)
    bob = await _user(db, clock, 22, funds=1000)
    await referrals.attribute(db, bob.id, await referrals.code_for(db, alice.id, clock.now()), clock.now())
    clock.advance(31 * 86400)
    await _captured_order(db, clock, bob, 1000, "late")
    assert await _available(db, 21) == 0


# --- Stars refunds -------------------------------------------------------------------------


class FakeTelegram:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[int, str]] = []
        self.refunded: set[str] = set()
        self.fail = fail

    async def refund_star_payment(self, telegram_id: int, charge_id: str) -> None:
        self.calls.append((telegram_id, charge_id))
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        if charge_id in self.refunded:
            raise StarRefundRejected("CHARGE_ALREADY_REFUNDED")
        self.refunded.add(charge_id)


async def test_star_refund_two_phase_and_idempotent(db, clock):
    await _user(db, clock, 31)
    await Wallets(db, clock).top_up(31, 700, source="telegram_stars", reference="ch-1")
    tg = FakeTelegram()
    refunds = StarRefunds(db, clock, tg)
    done = await refunds.refund("ch-1", reason="asked", actor="staff:a")
    assert (done.status, done.amount, done.created) == (Status.REFUNDED, 700, True)
    again = await refunds.refund("ch-1", reason="asked", actor="staff:a")
    assert (again.status, again.created) == (Status.REFUNDED, False)
    assert len(tg.calls) == 1
    assert await _available(db, 31) == 0
    with pytest.raises(NotFound):
        await refunds.refund("nope", reason="x", actor="staff:a")
    await _sound(db, clock)


async def test_star_refund_refused_by_telegram_voids_and_unknown_resumes(db, clock):
    await _user(db, clock, 32)
    await Wallets(db, clock).top_up(32, 400, source="telegram_stars", reference="ch-2")
    await Wallets(db, clock).top_up(32, 100, source="telegram_stars", reference="ch-3")
    failed = await StarRefunds(db, clock, FakeTelegram(StarRefundRejected("CHARGE_NOT_FOUND"))).refund(
        "ch-2", reason="r", actor="a"
    )
    assert (failed.status, failed.error) == (Status.FAILED, "CHARGE_NOT_FOUND")
    assert await _available(db, 32) == 500
    with pytest.raises(StarRefundUnavailable):
        await StarRefunds(db, clock, FakeTelegram(StarRefundUnavailable("timeout"))).refund(
            "ch-3", reason="r", actor="a"
        )
    assert await _available(db, 32) == 400  # held while Telegram's answer is unknown
    resumed = await StarRefunds(db, clock, FakeTelegram()).refund("ch-3", reason="r", actor="a")
    assert resumed.status == Status.REFUNDED
    assert await _available(db, 32) == 400
    await _sound(db, clock)


async def test_star_refund_refused_when_money_is_spent(db, clock):
    await _user(db, clock, 33)
    await Wallets(db, clock).top_up(33, 500, source="telegram_stars", reference="ch-4")
    await Wallets(db, clock).debit(33, 200, reason="spent")
    tg = FakeTelegram()
    with pytest.raises(InsufficientFunds):
        await StarRefunds(db, clock, tg).refund("ch-4", reason="r", actor="a")
    assert tg.calls == []
    async with db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(star_refunds)) == 0
    await _sound(db, clock)


@pytest.mark.parametrize("refund_first", [False, True])
async def test_star_refund_races_a_purchase_for_the_same_money(db, clock, refund_first):
    """A real purchase (order service, scripted provider) and a Stars refund both want the
    same 600: exactly one wins, the other is refused with nothing changed."""
    from tests.integration.orders_support import ScriptedProvider, Shop

    shop = Shop(db, clock, {"alpha": ScriptedProvider("alpha", clock)})
    await shop.setup_catalogue()
    buyer = await _user(db, clock, 34)
    await Wallets(db, clock).top_up(34, 600, source="telegram_stars", reference="ch-5")
    quote = await shop.quote(buyer.id, price=600)
    telegram = FakeTelegram()
    refunds = StarRefunds(db, clock, telegram)

    jobs = [
        lambda: shop.orders.purchase(user_id=buyer.id, quote_id=quote, idempotency_key="race"),
        lambda: refunds.refund("ch-5", reason="r", actor="a"),
    ]
    results = await _gather(jobs[::-1] if refund_first else jobs)
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], InsufficientFunds), results
    wallet = await Wallets(db, clock).show(34)
    if isinstance(won[0], StarRefund):  # the refund won: no order, Stars returned
        assert won[0].status == Status.REFUNDED and telegram.refunded == {"ch-5"}
        assert (wallet.balance, wallet.held) == (0, 0)
    else:  # the purchase won: the money is held for it, Telegram was never asked
        assert won[0].status == "waiting" and telegram.calls == []
        assert (wallet.balance, wallet.held, wallet.available) == (600, 600, 0)
        await shop.orders.cancel(won[0].id, user_id=buyer.id)
        await shop.orders.drain_background()
    await _sound(db, clock)


# --- invariant 6 ---------------------------------------------------------------------------


async def test_invariant_six_catches_programme_drift(db, clock, promos):
    from sqlalchemy import update

    from core.db.tables import promo_codes

    await promos.create("DRIFT", amount=100, max_uses=5, actor="t")
    assert (await promos.redeem(1, "DRIFT")).outcome == Outcome.CREDITED
    await _sound(db, clock)
    async with db.begin() as conn:  # a hand edit: one more use than redemptions
        await conn.execute(update(promo_codes).values(used=2, spent=200))
        await conn.execute(update(promo_redemptions).values(amount=50))
    found = {v.code for v in await check_invariants(db, clock.now())}
    assert {"promo_code_mismatch", "promo_transfer_mismatch"} <= found
