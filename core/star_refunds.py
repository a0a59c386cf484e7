"""Refunding a Telegram Stars payment: take the credited amount back, then return the Stars.

Two phases, because the Bot API call cannot sit inside a database transaction:

1. One transaction: claim the charge (``star_refunds`` row, primary key the
   ``telegram_payment_charge_id``) and hold the amount that payment credited on the buyer's
   wallet. The hold is the ledger's guarded debit, so a refund racing a purchase that
   spends the same money lets exactly one of them through; if the money is already spent
   the refund is refused and nothing is written.
2. ``refundStarPayment`` through a ``StarRefundPort`` (no transaction open).
3. One transaction: Telegram said yes (or "already refunded") → capture the hold; Telegram
   said no → void it and record the reason. A call whose outcome is unknown (timeout,
   network) leaves the hold in place; asking again for the same charge resumes at step 2,
   which is why the charge id, not the request, is the idempotency key.

The dashboard process calls the Bot API itself, through ``BotApiStarRefunds`` and the bot
token, rather than queueing the call for the bot process: the admin sees Telegram's answer
at once, and a lost answer is harmless because the hold and the retry make it exactly once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit, ledger
from core.clock import Clock
from core.db.engine import Database, insert_ignore
from core.db.tables import star_refunds, transfers, users
from core.errors import InvalidInput, NotFound, ShopError

STARS_SOURCE = "telegram_stars"  # the top-up source the bot books Stars payments under
HOLD_TTL = timedelta(days=1)  # a refund whose Bot API answer was lost waits this long


class Status(enum.StrEnum):
    HELD = "held"
    REFUNDED = "refunded"
    FAILED = "failed"


class StarRefundRejected(ShopError):
    """Telegram refused the refund (``code`` is its error, e.g. CHARGE_NOT_FOUND)."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(description or code)
        self.code = code


class StarRefundUnavailable(ShopError):
    """No answer from the Bot API: whether Telegram refunded is unknown; retry the refund."""


class StarRefundPort(Protocol):
    async def refund_star_payment(self, telegram_id: int, charge_id: str) -> None:
        """Return the Stars, or raise StarRefundRejected / StarRefundUnavailable."""


class BotApiStarRefunds:
    """``refundStarPayment`` over HTTP with the bot's token (Telegram or the emulator)."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 10.0) -> None:
        self.url = f"{api_url.rstrip('/')}/bot{token}/refundStarPayment"
        self.timeout = timeout

    async def refund_star_payment(self, telegram_id: int, charge_id: str) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(
                    self.url, json={"user_id": telegram_id, "telegram_payment_charge_id": charge_id}
                )
            body: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise StarRefundUnavailable(f"the Bot API did not answer: {type(exc).__name__}") from None
        if body.get("ok") is True:
            return
        description = str(body.get("description") or "")
        if response.status_code >= 500 or response.status_code == 429:
            raise StarRefundUnavailable(f"the Bot API answered {response.status_code}: {description}")
        raise StarRefundRejected(rejection_code(description), description)


def rejection_code(description: str) -> str:
    """``Bad Request: CHARGE_ALREADY_REFUNDED`` → ``CHARGE_ALREADY_REFUNDED``."""
    return description.rsplit(":", 1)[-1].strip() or "REJECTED"


@dataclass(frozen=True, slots=True)
class StarRefund:
    charge_id: str
    telegram_id: int
    amount: int
    status: Status
    reason: str
    actor: str
    error: str | None
    created_at: datetime
    updated_at: datetime
    created: bool = False  # True when this call started the refund


class StarRefunds:
    def __init__(self, db: Database, clock: Clock, port: StarRefundPort | None) -> None:
        self.db = db
        self.clock = clock
        self.port = port

    async def refund(self, charge_id: str, *, reason: str, actor: str) -> StarRefund:
        """Refund one Stars payment in full; idempotent per charge (see the module doc)."""
        charge_id = (charge_id or "").strip()
        reason = (reason or "").strip()
        if not charge_id or len(charge_id) > 100:
            raise InvalidInput("enter the payment's charge id")
        if not reason:
            raise InvalidInput("a reason is required")
        if self.port is None:
            raise InvalidInput("Stars refunds need BOT_TOKEN to reach the Bot API")
        now = self.clock.now()
        async with self.db.begin() as conn:
            started = await _start(conn, charge_id, reason, actor, now)
        if started.status != Status.HELD:
            return started  # settled before: the same answer again
        try:
            await self.port.refund_star_payment(started.telegram_id, charge_id)
        except StarRefundRejected as exc:
            if exc.code != "CHARGE_ALREADY_REFUNDED":  # that one means our refund went through
                return await self._settle(charge_id, Status.FAILED, actor, f"{exc.code}", started.created)
        # StarRefundUnavailable propagates: the hold stays, the same refund again resumes.
        return await self._settle(charge_id, Status.REFUNDED, actor, None, started.created)

    async def _settle(
        self, charge_id: str, status: Status, actor: str, error: str | None, created: bool
    ) -> StarRefund:
        now = self.clock.now()
        async with self.db.begin() as conn:
            sr = star_refunds.c
            moved = await conn.execute(
                update(star_refunds)
                .where(sr.charge_id == charge_id, sr.status == Status.HELD)
                .values(status=status, error=error, updated_at=now)
                .returning(sr.hold_transfer_id)
            )
            hold = moved.scalar_one_or_none()
            if hold is not None:
                if status == Status.REFUNDED:
                    await ledger.capture_hold(conn, hold, now)
                else:
                    await ledger.void_hold(conn, hold, now)
                await audit.record(
                    conn,
                    actor=actor,
                    action=f"stars.refund_{status}",
                    target_type="star_charge",
                    target_id=charge_id[:64],
                    reason=error,
                    now=now,
                )
            view = await _load(conn, charge_id)
        assert view is not None
        return _with_created(view, created)

    async def recent(self, *, limit: int = 100) -> list[StarRefund]:
        async with self.db.read() as conn:
            rows = await conn.execute(_SELECT.order_by(star_refunds.c.created_at.desc()).limit(limit))
            return [_view(r) for r in rows.mappings()]


async def _start(conn: AsyncConnection, charge_id: str, reason: str, actor: str, now: datetime) -> StarRefund:
    existing = await _load(conn, charge_id)
    if existing is not None:
        return existing
    topup = (
        await conn.execute(
            select(transfers.c.amount, users.c.id, users.c.wallet_account_id, users.c.telegram_id)
            .join(users, users.c.wallet_account_id == transfers.c.credit_account_id)
            .where(transfers.c.id == ledger.derived_id("topup", STARS_SOURCE, charge_id))
        )
    ).one_or_none()
    if topup is None:
        raise NotFound(f"no Stars payment with charge id {charge_id}")
    amount, user_id, wallet, _telegram_id = topup
    hold_id = ledger.derived_id("star_refund", charge_id)
    claimed = await conn.execute(
        insert_ignore(conn, star_refunds),
        dict(
            charge_id=charge_id,
            user_id=user_id,
            amount=amount,
            hold_transfer_id=hold_id,
            status=Status.HELD,
            reason=reason,
            actor=actor,
            error=None,
            created_at=now,
            updated_at=now,
        ),
    )
    if claimed.rowcount != 1:  # a concurrent request claimed it first (PostgreSQL waited)
        found = await _load(conn, charge_id)
        assert found is not None
        return found
    # Raises InsufficientFunds when the money is no longer there; the transaction (and the
    # claim above) then rolls back, so a later refund may try again.
    await ledger.create_hold(
        conn,
        id=hold_id,
        debit=wallet,
        credit=await ledger.system_account(conn, ledger.TOPUPS, spread=f"{STARS_SOURCE}:{charge_id}"),
        amount=amount,
        timeout_at=now + HOLD_TTL,
        now=now,
        code="star_refund",
    )
    await audit.record(
        conn,
        actor=actor,
        action="stars.refund",
        target_type="star_charge",
        target_id=charge_id[:64],
        reason=reason,
        detail={"amount": amount, "user_id": user_id, "hold": hold_id},
        now=now,
    )
    view = await _load(conn, charge_id)
    assert view is not None
    return _with_created(view, True)


_SELECT = select(
    star_refunds.c.charge_id,
    users.c.telegram_id,
    star_refunds.c.amount,
    star_refunds.c.status,
    star_refunds.c.reason,
    star_refunds.c.actor,
    star_refunds.c.error,
    star_refunds.c.created_at,
    star_refunds.c.updated_at,
).join(users, users.c.id == star_refunds.c.user_id)


async def _load(conn: AsyncConnection, charge_id: str) -> StarRefund | None:
    row = (await conn.execute(_SELECT.where(star_refunds.c.charge_id == charge_id))).mappings().one_or_none()
    return None if row is None else _view(row)


def _view(row: Any) -> StarRefund:
    return StarRefund(**{**row, "status": Status(row["status"])})


def _with_created(view: StarRefund, created: bool) -> StarRefund:
    from dataclasses import replace

    return replace(view, created=created)
