"""Referrals: a buyer's personal link, attribution of new users, and rewards paid at capture.

* Attribution is one row per referee (its primary key), inserted with ON CONFLICT DO NOTHING
  on the referee's first start only (see ``attribute``), never for oneself (a CHECK
  constraint too): once made it is never changed, whatever links the user opens later.
* A reward is ``REFERRAL_PERCENT`` of a captured order of a referee who joined less than
  ``REFERRAL_DAYS`` ago, paid ``marketing → referrer's wallet`` *inside the capture's own
  transaction*: the reward row (keyed by the order) and a transfer id derived from the order
  make it exactly once per order however often the capture is retried.
* A refund of a rewarded order takes the reward back inside the refund's transaction, but
  never more than the referrer's available balance (they may have spent it: the money is
  not theirs to lose twice). What cannot be taken back is written off — it stays a
  ``marketing`` expense — and recorded on the reward row for the dashboard.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Protocol

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core import ledger
from core.db.engine import Database, insert_ignore
from core.db.tables import accounts, orders, referral_codes, referral_rewards, referrals, transfers, users
from core.errors import InsufficientFunds
from core.system_accounts import MARKETING

# A link opened this long after the user's first contact is not a first start: the user
# row is made by the bot's middleware just before /start runs, so "new" means "just made".
NEW_USER_WINDOW = timedelta(minutes=10)
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud or retyped safely


class _Order(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def user_id(self) -> int: ...
    @property
    def price(self) -> int: ...


class _Settings(Protocol):
    REFERRAL_PERCENT: float
    REFERRAL_DAYS: int


class Attribution(enum.StrEnum):
    JOINED = "joined"
    SELF = "self"
    UNKNOWN = "unknown"  # no such referral code
    NOT_NEW = "not_new"  # the user was here before the link: nothing changes
    ALREADY = "already"  # attributed before (to whoever it was): never changed


@dataclass(frozen=True, slots=True)
class ReferralStats:
    code: str
    joined: int
    earned: int  # rewards paid, before anything taken back
    taken_back: int  # reversed after refunds


def reward_for(price: int, percent: float) -> int:
    """The referrer's share of a price, rounded down to a whole minor unit."""
    share = Decimal(price) * Decimal(str(percent)) / 100
    return int(share.to_integral_value(rounding=ROUND_FLOOR))


async def code_for(db: Database, user_id: int, now: datetime) -> str:
    """The user's referral code, made on first use (a race of two makes one)."""
    async with db.read() as conn:
        found = await conn.scalar(select(referral_codes.c.code).where(referral_codes.c.user_id == user_id))
    if found is not None:
        return str(found)
    async with db.begin() as conn:
        for _ in range(5):
            code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
            await conn.execute(
                insert_ignore(conn, referral_codes), dict(user_id=user_id, code=code, created_at=now)
            )
            found = await conn.scalar(
                select(referral_codes.c.code).where(referral_codes.c.user_id == user_id)
            )
            if found is not None:
                return str(found)
    raise RuntimeError("could not make a unique referral code")  # 31^8 codes: never in practice


async def attribute(db: Database, referee_user_id: int, code: str, now: datetime) -> Attribution:
    """Record who brought this user, if this is their first start; never changes it later."""
    code = (code or "").strip().lower()
    async with db.begin() as conn:
        referrer = await conn.scalar(select(referral_codes.c.user_id).where(referral_codes.c.code == code))
        if referrer is None:
            return Attribution.UNKNOWN
        if referrer == referee_user_id:
            return Attribution.SELF
        if (
            await conn.scalar(
                select(referrals.c.referrer_user_id).where(referrals.c.referee_user_id == referee_user_id)
            )
            is not None
        ):
            return Attribution.ALREADY
        user = (
            await conn.execute(
                select(users.c.created_at, users.c.wallet_account_id).where(users.c.id == referee_user_id)
            )
        ).one()
        active = await conn.scalar(
            select(
                or_(
                    exists().where(orders.c.user_id == referee_user_id),
                    exists().where(
                        or_(
                            transfers.c.credit_account_id == user.wallet_account_id,
                            transfers.c.debit_account_id == user.wallet_account_id,
                        )
                    ),
                )
            )
        )
        if user.created_at < now - NEW_USER_WINDOW or active:
            return Attribution.NOT_NEW
        inserted = await conn.execute(
            insert_ignore(conn, referrals),
            dict(referee_user_id=referee_user_id, referrer_user_id=referrer, joined_at=now),
        )
    return Attribution.JOINED if inserted.rowcount == 1 else Attribution.ALREADY


async def reward_capture(conn: AsyncConnection, order: _Order, now: datetime, settings: _Settings) -> None:
    """Pay the referrer's share of this just-captured order, in the capture's transaction."""
    await reward_captures(conn, [order], now, settings)


async def reward_captures(
    conn: AsyncConnection, captured: Sequence[_Order], now: datetime, settings: _Settings
) -> None:
    """``reward_capture`` for a batch: one query when none of the buyers was referred."""
    if not captured or settings.REFERRAL_PERCENT <= 0 or settings.REFERRAL_DAYS <= 0:
        return
    since = now - timedelta(days=settings.REFERRAL_DAYS)
    referrer = users.alias("referrer")
    rows = await conn.execute(
        select(referrals.c.referee_user_id, referrals.c.referrer_user_id, referrer.c.wallet_account_id)
        .join(referrer, referrer.c.id == referrals.c.referrer_user_id)
        .where(
            referrals.c.referee_user_id.in_({o.user_id for o in captured}),
            referrals.c.joined_at > since,
        )
    )
    found = {referee: (by, wallet) for referee, by, wallet in rows.all()}
    if not found:
        return
    marketing = await ledger.system_account(conn, MARKETING)
    for order in captured:
        if order.user_id not in found:
            continue
        referrer_id, wallet = found[order.user_id]
        amount = reward_for(order.price, settings.REFERRAL_PERCENT)
        if amount <= 0:
            continue
        transfer_id = ledger.derived_id("referral", order.id)
        row = dict(
            order_id=order.id,
            referrer_user_id=referrer_id,
            referee_user_id=order.user_id,
            amount=amount,
            transfer_id=transfer_id,
            reversed=0,
            written_off=0,
            reversed_at=None,
            created_at=now,
        )
        if (await conn.execute(insert_ignore(conn, referral_rewards), row)).rowcount != 1:
            continue  # rewarded by an earlier capture of this order
        await ledger.post_transfer(
            conn,
            id=transfer_id,
            debit=marketing,
            credit=wallet,
            amount=amount,
            code="referral",
            order_id=order.id,
            now=now,
        )


async def reverse_refund(conn: AsyncConnection, order_id: str, now: datetime) -> None:
    """Take back the reward of a refunded order, in the refund's transaction; the part the
    referrer's available balance cannot cover is written off. Once per order: the reward
    row is marked reversed by a guarded UPDATE before any money moves."""
    rr = referral_rewards.c
    claimed = (
        await conn.execute(
            update(referral_rewards)
            .where(rr.order_id == order_id, rr.reversed_at.is_(None))
            .values(reversed_at=now)
            .returning(rr.referrer_user_id, rr.amount)
        )
    ).one_or_none()
    if claimed is None:
        return
    referrer_id, amount = claimed
    wallet: int = (
        await conn.execute(select(users.c.wallet_account_id).where(users.c.id == referrer_id))
    ).scalar_one()
    # Lock the referrer's wallet so the amount read is the amount there at the debit
    # (PostgreSQL; SQLite's write transaction is already exclusive).
    await conn.execute(select(accounts.c.id).where(accounts.c.id == wallet).with_for_update())
    available = (await ledger.balance_of(conn, wallet)).available
    take = max(0, min(amount, available))
    if take:
        try:
            await ledger.post_transfer(
                conn,
                id=ledger.derived_id("referral_back", order_id),
                debit=wallet,
                credit=await ledger.system_account(conn, MARKETING),
                amount=take,
                code="referral_back",
                order_id=order_id,
                now=now,
            )
        except InsufficientFunds:  # not expected under the lock; then nothing is taken
            take = 0
    await conn.execute(
        update(referral_rewards)
        .where(rr.order_id == order_id)
        .values(reversed=take, written_off=amount - take)
    )


async def stats(db: Database, user_id: int, now: datetime) -> ReferralStats:
    code = await code_for(db, user_id, now)
    async with db.read() as conn:
        joined = await conn.scalar(
            select(func.count()).select_from(referrals).where(referrals.c.referrer_user_id == user_id)
        )
        earned, back = (
            await conn.execute(
                select(
                    func.coalesce(func.sum(referral_rewards.c.amount), 0),
                    func.coalesce(func.sum(referral_rewards.c.reversed), 0),
                ).where(referral_rewards.c.referrer_user_id == user_id)
            )
        ).one()
    return ReferralStats(code, int(joined or 0), int(earned), int(back))


async def earnings(db: Database, *, limit: int = 100) -> dict[str, Any]:
    """For the dashboard: totals and the latest rewards, write-offs included."""
    rr = referral_rewards.c
    referrer, referee = users.alias("referrer"), users.alias("referee")
    async with db.read() as conn:
        total = (
            await conn.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(rr.amount), 0),
                    func.coalesce(func.sum(rr.reversed), 0),
                    func.coalesce(func.sum(rr.written_off), 0),
                )
            )
        ).one()
        joined = await conn.scalar(select(func.count()).select_from(referrals))
        rows = await conn.execute(
            select(
                rr.order_id,
                rr.amount,
                rr.reversed,
                rr.written_off,
                rr.reversed_at,
                rr.created_at,
                referrer.c.telegram_id.label("referrer"),
                referee.c.telegram_id.label("referee"),
            )
            .join(referrer, referrer.c.id == rr.referrer_user_id)
            .join(referee, referee.c.id == rr.referee_user_id)
            .order_by(rr.created_at.desc())
            .limit(limit)
        )
        return {
            "rewards": int(total[0]),
            "earned": int(total[1]),
            "taken_back": int(total[2]),
            "written_off": int(total[3]),
            "joined": int(joined or 0),
            "rows": [dict(r) for r in rows.mappings()],
        }
