"""Closing an order: cancel, expire, fail, staff refund, and settling a closed order's hold.

Cancel and expiry look for a code one last time before voiding the hold, so a code that
arrived just now is captured, never given away after a refund. The user's answer follows
the refund's commit; closing the activation upstream runs after it (``upstream``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from core import ledger, outbox
from core.errors import InvalidInput, OrderNotFound, OrderStateConflict
from core.order_states import OPEN, OrderEvent, OrderStatus, UpstreamState
from core.orders import transitions, upstream
from core.orders.upstream import after_direct_close
from core.orders.view import CancelResult, OrderView, load, with_
from core.providers.errors import ProviderError

if TYPE_CHECKING:
    from core.orders.service import OrderService

log = logging.getLogger("core.orders")

FINAL_CHECK_BUDGET_S = 2.0
_VOIDED = (OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.FAILED)


async def cancel(
    svc: OrderService,
    order_id: str,
    *,
    user_id: int | None = None,
    actor: str = "user",
    reason: str | None = None,
) -> CancelResult:
    order = await svc.get_order(order_id, user_id=user_id)
    if order.status == OrderStatus.CANCELLED:
        return CancelResult(order, 0, already=True)
    if order.status == OrderStatus.RESERVING and actor == "user":
        raise OrderStateConflict(order.id, order.status, "cancel yet")
    if order.status not in OPEN:
        raise OrderStateConflict(order.id, order.status, "cancel")
    if order.status == OrderStatus.WAITING:
        checked = await final_check(svc, order, actor=actor)
        if checked.status == OrderStatus.COMPLETED:
            return CancelResult(checked, 0, completed_instead=True)
        order = checked
    now = svc.clock.now()
    values = dict(
        upstream_state=(UpstreamState.CANCEL_PENDING if order.activation_id else UpstreamState.NONE),
        upstream_retry_at=after_direct_close(now),
        next_poll_at=None,
    )
    async with svc.db.begin() as conn:
        # CAS from the status we read: if it moved since, nothing is written here.
        won = await transitions.apply(
            svc,
            conn,
            order,
            OrderEvent.CANCEL,
            actor=actor,
            now=now,
            values=values,
            detail={"reason": reason} if reason else None,
            notify=actor != "user",
        )
        if won and actor != "user":
            from core import audit

            await audit.record(
                conn,
                actor=actor,
                action="order.cancel",
                target_type="order",
                target_id=order_id,
                reason=reason,
                detail={"refunded": order.price},
                now=now,
            )
        after = None if won else await load(conn, order_id)
    if after is not None:
        if after.status == OrderStatus.CANCELLED:
            return CancelResult(after, 0, already=True)
        if after.status == OrderStatus.COMPLETED:
            return CancelResult(after, 0, completed_instead=True)
        raise OrderStateConflict(after.id, after.status, "cancel")
    cancelled = with_(
        order,
        status=OrderStatus.CANCELLED,
        version=order.version + 1,
        updated_at=now,
        closed_at=order.closed_at or now,
        **values,
    )
    # The refund is committed: answer now. The provider's cancel may take up to its read
    # timeout, so it runs after this call returns (and is retried by the job if it fails).
    upstream.start_close(svc, cancelled)
    return CancelResult(cancelled, cancelled.price)


async def final_check(svc: OrderService, order: OrderView, *, actor: str) -> OrderView:
    """One last look for a code before money goes back, within a short budget."""
    if not order.activation_id or order.provider is None or order.provider not in svc.providers:
        return order
    try:
        # ``asyncio.timeout``, not ``wait_for``: wait_for runs the call in a task of its own,
        # and each hop to and from it waits out a full turn of a busy event loop (with the
        # inline SQLite driver a turn is every other user's transactions): cancel's p99 was
        # seconds while the provider answered in microseconds.
        async with asyncio.timeout(FINAL_CHECK_BUDGET_S):
            status = await svc.providers[order.provider].status(order.activation_id)
    except (ProviderError, TimeoutError) as exc:
        log.info("order %s: final check failed (%s); proceeding", order.id, exc)
        return order
    if status.messages:
        return await svc.record_messages(order.id, status.messages, actor=actor)
    return order


async def expire(svc: OrderService, order_id: str, *, actor: str = "scheduler") -> OrderView:
    order = await svc.get_order(order_id)
    if order.status != OrderStatus.WAITING:
        return order
    order = await final_check(svc, order, actor=actor)
    if order.status != OrderStatus.WAITING:
        return order
    now = svc.clock.now()
    async with svc.db.begin() as conn:
        current = await load(conn, order_id)
        assert current is not None
        won = current.status == OrderStatus.WAITING and await transitions.apply(
            svc,
            conn,
            current,
            OrderEvent.EXPIRE,
            actor=actor,
            now=now,
            values=dict(
                upstream_state=UpstreamState.CANCEL_PENDING,
                upstream_retry_at=after_direct_close(now),
                next_poll_at=None,
            ),
            notify=True,
        )
        after = await load(conn, order_id)
    assert after is not None
    if won:
        await upstream.close(svc, after)
    return await svc.get_order(order_id)


async def fail(
    svc: OrderService,
    order_id: str,
    *,
    reason: str,
    actor: str = "system",
    notify: bool = True,
    detail: dict[str, Any] | None = None,
    upstream_state: UpstreamState | None = None,
) -> OrderView:
    now = svc.clock.now()
    async with svc.db.begin() as conn:
        current = await load(conn, order_id)
        if current is None:
            raise OrderNotFound(f"no order {order_id}")
        if current.status in OPEN:
            state = upstream_state or (
                UpstreamState.CANCEL_PENDING if current.activation_id else UpstreamState.NONE
            )
            await transitions.apply(
                svc,
                conn,
                current,
                OrderEvent.FAIL,
                actor=actor,
                now=now,
                values=dict(
                    failure_reason=reason[:255],
                    upstream_state=state,
                    upstream_retry_at=after_direct_close(now),
                    next_poll_at=None,
                ),
                detail={"reason": reason, **(detail or {})},
                notify=notify,
            )
        after = await load(conn, order_id)
    assert after is not None
    if after.upstream_state == UpstreamState.CANCEL_PENDING and current.status != after.status:
        await upstream.close(svc, after)
        after = await svc.get_order(order_id)
    return after


async def staff_refund(
    svc: OrderService,
    order_id: str,
    *,
    actor: str,
    reason: str,
    idempotency_key: str | None = None,
) -> OrderView:
    """Return a completed order's price to the wallet (revenue → wallet, posted)."""
    from core import audit

    if not reason or not reason.strip():
        raise InvalidInput("a reason is required")
    now = svc.clock.now()
    async with svc.db.begin() as conn:
        order = await load(conn, order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id}")
        if order.status == OrderStatus.REFUNDED:
            return order
        if order.status != OrderStatus.COMPLETED:
            raise OrderStateConflict(order.id, order.status, "refund (only completed orders)")
        won = await transitions.apply(
            svc, conn, order, OrderEvent.REFUND, actor=actor, now=now, detail={"reason": reason}, notify=True
        )
        if won:
            await audit.record(
                conn,
                actor=actor,
                action="order.refund",
                target_type="order",
                target_id=order_id,
                reason=reason,
                detail={"amount": order.price, "idempotency_key": idempotency_key},
                now=now,
            )
        after = await load(conn, order_id)
    assert after is not None
    return after


async def settle_closed_order_hold(svc: OrderService, order_id: str, *, actor: str) -> bool:
    """Repair a closed order whose hold is still unresolved: void it for a cancelled, expired
    or failed order (the user is owed the money), capture it for a completed or refunded
    one (the user had the code). The order's status is the truth here; its notification is
    queued under the transition's own dedupe key, so a user who was already told is not
    told twice. True when this call settled the hold."""
    from core import audit

    now = svc.clock.now()
    async with svc.db.begin() as conn:
        order = await load(conn, order_id)
        if order is None or order.is_open:
            return False
        if await ledger.hold_resolution(conn, order.hold_transfer_id) is not None:
            return False
        voiding = order.status in _VOIDED
        if voiding:
            await ledger.void_hold(conn, order.hold_transfer_id, now)
        else:
            await ledger.capture_hold(conn, order.hold_transfer_id, now)
        # The event and audit names predate "capture"; dashboards filter on them.
        action = "hold_voided" if voiding else "hold_posted"
        await transitions.record_event(
            conn,
            order_id,
            action,
            order.status,
            order.status,
            actor,
            {"reason": "reconciliation: order closed with its hold pending"},
            now,
        )
        await audit.record(
            conn,
            actor=actor,
            action=f"order.{action}",
            target_type="order",
            target_id=order_id,
            reason="order closed with its hold pending",
            detail={"amount": order.price, "status": order.status},
            now=now,
        )
        chat = order.chat_id or order.telegram_id
        if voiding and chat:
            await outbox.enqueue(
                conn,
                kind=order.status,
                chat_id=chat,
                order_id=order_id,
                now=now,
                dedupe_key=f"order:{order_id}:{order.status}",
                payload=transitions.notice_payload(svc, order, status=order.status, refunded=order.price),
            )
    return True
