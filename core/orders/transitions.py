"""Applying a transition: compare-and-set on the status, its ledger effect, its event row and
its notice, all in the caller's transaction.

Whoever loses a compare-and-set changes nothing at all, so two writers racing on one order
(a code and a cancel, two schedulers) move its money once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core import ledger, outbox, referrals
from core.db.tables import order_events, orders, users
from core.order_states import OPEN, LedgerEffect, OrderEvent, Transition, transition
from core.orders.view import OrderView

if TYPE_CHECKING:
    from core.orders.service import OrderService

log = logging.getLogger("core.orders")

# Compare-and-set of an order's status; the new column values come in as parameters.
_CAS = (
    update(orders)
    .where(orders.c.id == bindparam("b_id"), orders.c.status == bindparam("b_from"))
    .values(version=orders.c.version + 1)
)

_NOTICE_KEYS = frozenset(
    {
        "code",
        "text",
        "status",
        "refunded",
        "phone",
        "expires_at",
        "failure_reason",
        "activation_id",
        "screen_shown",
    }
)


class Retry(Exception):
    """Internal: roll the transaction back and run it again with fresh state."""


def event_row(
    order_id: str,
    event: str,
    source: str | None,
    target: str | None,
    actor: str,
    detail: dict[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    return dict(
        order_id=order_id,
        event=event,
        from_status=source,
        to_status=target,
        actor=actor,
        detail=detail,
        created_at=now,
    )


def outbox_row(
    *,
    kind: str,
    chat_id: int,
    payload: dict[str, Any],
    dedupe_key: str,
    now: datetime,
    order_id: str | None = None,
) -> dict[str, Any]:
    """The row ``outbox.enqueue`` writes, for inserting many in one statement."""
    return dict(
        dedupe_key=dedupe_key,
        kind=kind,
        chat_id=chat_id,
        order_id=order_id,
        payload=payload,
        status=outbox.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


async def apply(
    svc: OrderService,
    conn: AsyncConnection,
    order: OrderView,
    event: OrderEvent,
    *,
    actor: str,
    now: datetime,
    values: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
    notify: bool = False,
    payload: dict[str, Any] | None = None,
) -> bool:
    """Compare-and-set the transition with its ledger effect, event and notification.
    False means another writer moved the order first; nothing was changed."""
    t: Transition = transition(order.status, event)
    if not await cas(conn, order, t, now, values or {}):
        return False
    refunded = 0
    if t.effect == LedgerEffect.CAPTURE:
        await ledger.capture_hold(conn, order.hold_transfer_id, now)
        await referrals.reward_capture(conn, order, now, svc.settings)
    elif t.effect == LedgerEffect.VOID:
        await ledger.void_hold(conn, order.hold_transfer_id, now)
        refunded = order.price
    elif t.effect == LedgerEffect.REFUND:
        # scalar_one: every order's user exists (foreign key) and has a wallet (NOT NULL).
        wallet: int = (
            await conn.execute(select(users.c.wallet_account_id).where(users.c.id == order.user_id))
        ).scalar_one()
        revenue = await ledger.system_account(conn, ledger.REVENUE, spread=order.id)
        await ledger.post_transfer(
            conn,
            id=ledger.derived_id("refund", order.id),
            debit=revenue,
            credit=wallet,
            amount=order.price,
            code="refund",
            order_id=order.id,
            now=now,
            memo=(detail or {}).get("reason"),
        )
        await referrals.reverse_refund(conn, order.id, now)
        refunded = order.price
    await record_event(conn, order.id, event.value, t.source, t.target, actor, detail, now)
    note = notice(svc, order, t, now, values or {}, payload, refunded) if notify else None
    if note is not None:
        await outbox.enqueue(conn, **note)
    return True


async def cas(
    conn: AsyncConnection,
    order: OrderView,
    t: Transition,
    now: datetime,
    values: dict[str, Any],
) -> bool:
    """The compare-and-set of ``t`` on the order row: False if it is no longer in
    ``t.source`` (another writer moved it first) and nothing was changed."""
    params = {
        "b_id": order.id,
        "b_from": t.source.value,
        "status": t.target.value,
        "updated_at": now,
        **values,
    }
    if t.target not in OPEN and order.closed_at is None:
        params["closed_at"] = now
    res = await conn.execute(_CAS, params)
    return res.rowcount == 1


def notice(
    svc: OrderService,
    order: OrderView,
    t: Transition,
    now: datetime,
    values: dict[str, Any],
    payload: dict[str, Any] | None,
    refunded: int,
) -> dict[str, Any] | None:
    """The user's notification of a transition (``outbox.enqueue`` arguments), deduped
    per order and target status; None when the order has no chat to tell."""
    chat = order.chat_id or order.telegram_id
    if not chat:
        return None
    body = notice_payload(
        svc, order, **{**values, **(payload or {}), "status": t.target.value, "refunded": refunded}
    )
    return dict(
        kind=t.target.value,
        chat_id=chat,
        order_id=order.id,
        payload=body,
        now=now,
        dedupe_key=f"order:{order.id}:{t.target.value}",
    )


def notice_payload(svc: OrderService, order: OrderView, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": order.id,
        "service": order.service,
        "country": order.country,
        "phone": order.phone,
        "price": order.price,
        "currency": svc.settings.SHOP_CURRENCY,
        "message_id": order.message_id,
    }
    for key, value in extra.items():
        if isinstance(value, datetime):
            value = value.isoformat()
        if key in _NOTICE_KEYS:
            body[key] = value
    return body


async def record_event(
    conn: AsyncConnection,
    order_id: str,
    event: str,
    source: str | None,
    target: str | None,
    actor: str,
    detail: dict[str, Any] | None,
    now: datetime,
) -> None:
    await conn.execute(order_events.insert(), event_row(order_id, event, source, target, actor, detail, now))


async def note(svc: OrderService, order_id: str, event: str, detail: dict[str, Any]) -> None:
    """An event row outside any transition (e.g. a rent whose outcome is unknown)."""
    async with svc.db.begin() as conn:
        await record_event(conn, order_id, event, None, None, "system", detail, svc.clock.now())


async def alert(svc: OrderService, text: str, dedupe: str) -> None:
    """Queue a staff alert (one per dedupe key per hour) when STAFF_CHAT_ID is set."""
    chat = svc.settings.STAFF_CHAT_ID
    if chat is None:
        log.warning("staff alert: %s", text)
        return
    now = svc.clock.now()
    async with svc.db.begin() as conn:
        await outbox.enqueue(
            conn,
            kind="staff_alert",
            chat_id=chat,
            payload={"text": text},
            now=now,
            dedupe_key=f"alert:{dedupe}:{now:%Y%m%d%H}",
        )
