"""The simulation's promo, referral and Stars refund actions, and what they owe each wallet.

Kept apart from ``test_scenarios`` so that file only names the actions and adds
``owed(user)`` to each user's expected balance: promo credits and referral rewards in,
reversed rewards and refunded Stars out."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from sqlalchemy import func, select

from core.db.engine import insert_ignore
from core.db.tables import promo_redemptions, referral_rewards, referrals, star_refunds
from core.errors import InsufficientFunds, OrderStateConflict
from core.promo import Outcome, Promos
from core.star_refunds import StarRefundRejected, StarRefunds, StarRefundUnavailable, Status
from core.wallets import Wallets

ACTIONS = ["promo", "staff_refund", "stars", "star_refund"]
WEIGHTS = [2, 2, 2, 2]


class FlakyTelegram:
    """refundStarPayment that sometimes refuses, sometimes loses its answer."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.refunded: set[str] = set()
        self.reliable = False

    async def refund_star_payment(self, telegram_id: int, charge_id: str) -> None:
        roll = 1.0 if self.reliable else self.rng.random()
        if roll < 0.15:
            raise StarRefundUnavailable("timeout")
        if charge_id in self.refunded:
            raise StarRefundRejected("CHARGE_ALREADY_REFUNDED")
        if roll < 0.3:
            raise StarRefundRejected("CHARGE_NOT_FOUND")
        self.refunded.add(charge_id)
        if roll < 0.4:
            raise StarRefundUnavailable("answer lost after the refund")


class Programmes:
    def __init__(self, scenario: Any) -> None:
        self.s = scenario
        self.shop = scenario.shop
        self.rng: random.Random = scenario.rng
        self.promos = Promos(self.shop.db, self.shop.clock)
        self.telegram = FlakyTelegram(self.rng)
        self.refunds = StarRefunds(self.shop.db, self.shop.clock, self.telegram)
        self.charges: list[str] = []
        self.codes: list[str] = []

    async def setup(self) -> None:
        """The first user brought the others (attribution itself is tested elsewhere)."""
        users = self.s.users
        async with self.shop.db.begin() as conn:
            for user in users[1:]:
                await conn.execute(
                    insert_ignore(conn, referrals),
                    dict(
                        referee_user_id=user.id, referrer_user_id=users[0].id, joined_at=self.shop.clock.now()
                    ),
                )
        code = f"SIM{self.s.seed}"
        await self.promos.create(
            code, amount=self.rng.choice([10, 25]), max_uses=self.rng.randint(1, 3), actor="sim"
        )
        self.codes.append(code)

    async def promo(self) -> None:
        """Several redemptions at once, a user sometimes twice."""
        who = [self.rng.choice(self.s.users) for _ in range(self.rng.randint(1, 4))]
        code = self.rng.choice(self.codes)
        results = await asyncio.gather(
            *(self.promos.redeem(u.telegram_id, code) for u in who), return_exceptions=True
        )
        assert all(not isinstance(r, BaseException) for r in results), results
        credited = [u.id for u, r in zip(who, results, strict=True) if r.outcome == Outcome.CREDITED]
        assert len(credited) == len(set(credited)), results  # once per user

    async def staff_refund(self) -> None:
        done = await self.s._open("completed")
        if not done:
            return
        async with self.shop.db.read() as conn:
            rewarded = set(
                (
                    await conn.execute(
                        select(referral_rewards.c.order_id).where(
                            referral_rewards.c.order_id.in_([o.id for o in done])
                        )
                    )
                ).scalars()
            )
        # Mostly a rewarded order: its refund must take the reward back (or write it off).
        preferred = [o for o in done if o.id in rewarded]
        order = self.rng.choice(preferred if preferred and self.rng.random() < 0.8 else done)
        try:
            await self.shop.orders.staff_refund(order.id, actor="staff:sim", reason="sim")
        except OrderStateConflict:
            pass

    async def stars(self) -> None:
        user = self.rng.choice(self.s.users)
        charge = f"sim{self.s.seed}:{len(self.charges)}"
        amount = self.rng.choice([50, 100])
        await Wallets(self.shop.db, self.shop.clock).top_up(
            user.telegram_id, amount, source="telegram_stars", reference=charge
        )
        self.s.funding[user.id] += amount
        self.charges.append(charge)

    async def star_refund(self) -> None:
        if not self.charges:
            return
        charge = self.rng.choice(self.charges)
        try:
            await self.refunds.refund(charge, reason="sim", actor="staff:sim")
        except (InsufficientFunds, StarRefundUnavailable):
            pass

    async def settle(self) -> None:
        """Finish every refund whose answer was lost, as an admin resubmitting would."""
        self.telegram.reliable = True
        async with self.shop.db.read() as conn:
            held = (
                await conn.execute(
                    select(star_refunds.c.charge_id).where(star_refunds.c.status == Status.HELD)
                )
            ).scalars()
            pending = list(held)
        for charge in pending:
            assert (
                await self.refunds.refund(charge, reason="sim", actor="staff:sim")
            ).status == Status.REFUNDED


async def owed(shop: Any, user: Any) -> int:
    """What the programmes added to (or took from) this user's balance."""
    async with shop.db.read() as conn:
        promo = await conn.scalar(
            select(func.coalesce(func.sum(promo_redemptions.c.amount), 0)).where(
                promo_redemptions.c.user_id == user.id
            )
        )
        rewards = await conn.scalar(
            select(func.coalesce(func.sum(referral_rewards.c.amount - referral_rewards.c.reversed), 0)).where(
                referral_rewards.c.referrer_user_id == user.id
            )
        )
        refunded = await conn.scalar(
            select(func.coalesce(func.sum(star_refunds.c.amount), 0)).where(
                star_refunds.c.user_id == user.id, star_refunds.c.status == Status.REFUNDED
            )
        )
    return int(promo or 0) + int(rewards or 0) - int(refunded or 0)
