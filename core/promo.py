"""Promo codes: staff create them, buyers redeem them for wallet credit paid by ``marketing``.

A redemption is exactly-once by construction, in one transaction:

1. ``INSERT`` the (code, user) row with ON CONFLICT DO NOTHING. Its primary key is what makes
   "once per user" exact: a second redemption by the same user (even a concurrent one; on
   PostgreSQL it waits on the unique index for the first to commit) inserts nothing and is
   answered "already redeemed" without touching the code.
2. One guarded ``UPDATE`` takes a use and the amount from the code only while it is enabled,
   unexpired, has uses left and its budget still covers the amount. Concurrent redeemers
   queue on the code's row and each re-checks the condition after the one before commits,
   so a 10-use code pays exactly 10 times however many try at once.
3. The ledger transfer ``marketing → wallet`` with an id derived from (code, user), so even a
   replayed transaction could not credit twice.

If step 2 refuses, the transaction is rolled back, taking the row of step 1 with it: a code
that was used up leaves no redemption behind, and the user may try a different code.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit, ledger
from core.clock import Clock
from core.db.engine import Database, insert_ignore
from core.db.tables import promo_codes, promo_redemptions
from core.errors import InvalidInput, NotFound, ShopError
from core.system_accounts import MARKETING
from core.users import get_or_create_user

CODE_RE = re.compile(r"^[A-Z0-9_-]{3,32}$")
MAX_AMOUNT = 10**9  # a promo code worth more than this is a typo
MAX_USES = 1_000_000


class PromoCodeExists(ShopError):
    """A code with this name already exists (codes are never reused: redemptions name them)."""


class Outcome(enum.StrEnum):
    CREDITED = "credited"
    ALREADY = "already"  # this user redeemed this code before: nothing more is credited
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED_UP = "used_up"  # no uses or budget left
    DISABLED = "disabled"
    INVALID = "invalid"  # not even the shape of a code


@dataclass(frozen=True, slots=True)
class Redemption:
    outcome: Outcome
    code: str
    amount: int = 0  # what this call credited (0 unless CREDITED)
    available: int | None = None  # the wallet's available balance after, when credited


@dataclass(frozen=True, slots=True)
class PromoCode:
    code: str
    amount: int
    max_uses: int
    used: int
    budget: int
    spent: int
    expires_at: datetime | None
    disabled: bool
    created_by: str
    created_at: datetime

    def state(self, now: datetime) -> str:
        if self.disabled:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.used >= self.max_uses or self.spent + self.amount > self.budget:
            return "used up"
        return "active"


def normalize(code: str | None) -> str | None:
    """The canonical form of what a user typed, or None if it cannot be a code."""
    text = (code or "").strip().upper()
    return text if CODE_RE.match(text) else None


class _Refused(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome


_pc = promo_codes.c


def _take_use(code: str, now: datetime) -> Any:
    return (
        update(promo_codes)
        .where(
            _pc.code == code,
            _pc.disabled.is_(False),
            (_pc.expires_at.is_(None)) | (_pc.expires_at > now),
            _pc.used < _pc.max_uses,
            _pc.spent + _pc.amount <= _pc.budget,
        )
        .values(used=_pc.used + 1, spent=_pc.spent + _pc.amount)
    )


class Promos:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def create(
        self,
        code: str,
        *,
        amount: int,
        max_uses: int,
        budget: int | None = None,
        expires_at: datetime | None = None,
        actor: str,
    ) -> PromoCode:
        """A new code; its budget defaults to amount × uses (the most it can pay anyway)."""
        name = normalize(code)
        if name is None:
            raise InvalidInput("a code is 3 to 32 letters, digits, '-' or '_'")
        for label, value, top in (("amount", amount, MAX_AMOUNT), ("uses", max_uses, MAX_USES)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidInput(f"the {label} must be a whole number greater than zero")
            if value > top:
                raise InvalidInput(f"the {label} is too large (at most {top})")
        if budget is None:
            budget = amount * max_uses
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < amount:
            raise InvalidInput("the budget must cover at least one redemption")
        if budget > MAX_AMOUNT * MAX_USES:
            raise InvalidInput("the budget is too large")
        now = self.clock.now()
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("the expiry is in the past")
        row = dict(
            code=name,
            amount=amount,
            max_uses=max_uses,
            used=0,
            budget=budget,
            spent=0,
            expires_at=expires_at,
            disabled=False,
            created_by=actor,
            created_at=now,
        )
        async with self.db.begin() as conn:
            if (await conn.execute(insert_ignore(conn, promo_codes), row)).rowcount != 1:
                raise PromoCodeExists(f"the code {name} already exists")
            await audit.record(
                conn,
                actor=actor,
                action="promo.create",
                target_type="promo_code",
                target_id=name,
                detail={
                    "amount": amount,
                    "max_uses": max_uses,
                    "budget": budget,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                },
                now=now,
            )
        return PromoCode(**row)  # type: ignore[arg-type]

    async def disable(self, code: str, *, actor: str, reason: str | None = None) -> bool:
        """Stop a code; False when it was already disabled. Redemptions made stay made."""
        name = normalize(code)
        now = self.clock.now()
        async with self.db.begin() as conn:
            if name is None or await conn.scalar(select(_pc.code).where(_pc.code == name)) is None:
                raise NotFound(f"no promo code {code!r}")
            result = await conn.execute(
                update(promo_codes).where(_pc.code == name, _pc.disabled.is_(False)).values(disabled=True)
            )
            if result.rowcount == 1:
                await audit.record(
                    conn,
                    actor=actor,
                    action="promo.disable",
                    target_type="promo_code",
                    target_id=name,
                    reason=reason,
                    now=now,
                )
        return result.rowcount == 1

    async def codes(self, *, limit: int = 200) -> list[PromoCode]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(promo_codes).order_by(_pc.created_at.desc()).limit(limit))
            return [PromoCode(**r) for r in rows.mappings()]

    async def redeem(self, telegram_id: int, code: str) -> Redemption:
        """Credit the code's amount to this user once; every refusal changes nothing."""
        name = normalize(code)
        if name is None:
            return Redemption(Outcome.INVALID, (code or "").strip()[:32])
        now = self.clock.now()
        try:
            async with self.db.begin() as conn:
                user = await get_or_create_user(conn, telegram_id=telegram_id, now=now)
                amount = await conn.scalar(select(_pc.amount).where(_pc.code == name))
                if amount is None:
                    raise _Refused(Outcome.UNKNOWN)
                transfer_id = ledger.derived_id("promo", name, user.id)
                claimed = await conn.execute(
                    insert_ignore(conn, promo_redemptions),
                    dict(
                        code=name,
                        user_id=user.id,
                        amount=amount,
                        transfer_id=transfer_id,
                        created_at=now,
                    ),
                )
                if claimed.rowcount != 1:
                    raise _Refused(Outcome.ALREADY)
                if (await conn.execute(_take_use(name, now))).rowcount != 1:
                    raise _Refused(await _why_refused(conn, name, now))
                marketing = await ledger.system_account(conn, MARKETING)
                await ledger.post_transfer(
                    conn,
                    id=transfer_id,
                    debit=marketing,
                    credit=user.wallet_account_id,
                    amount=amount,
                    code="promo",
                    now=now,
                    reference=f"promo:{name}",
                )
                available = (await ledger.balance_of(conn, user.wallet_account_id)).available
        except _Refused as refused:
            return Redemption(refused.outcome, name)
        return Redemption(Outcome.CREDITED, name, amount, available)

    async def redemptions(self, code: str, *, limit: int = 100) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(promo_redemptions)
                .where(promo_redemptions.c.code == code)
                .order_by(promo_redemptions.c.created_at.desc())
                .limit(limit)
            )
            return [dict(r) for r in rows.mappings()]


async def _why_refused(conn: AsyncConnection, name: str, now: datetime) -> Outcome:
    row = (await conn.execute(select(promo_codes).where(_pc.code == name))).mappings().one()
    code = PromoCode(**row)
    return {
        "disabled": Outcome.DISABLED,
        "expired": Outcome.EXPIRED,
    }.get(code.state(now), Outcome.USED_UP)
