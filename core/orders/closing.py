"""Closing an order: cancel, expire, fail, staff refund, Done, and settling a closed
order's hold.

Cancel and expiry look for a code one last time before voiding the hold, so a code that
arrived just now is captured, never given away after a refund. The user's answer follows
the refund's commit; closing the activation upstream runs after it (``upstream``).

A completed order's number stays open for more codes until the buyer taps Done or its
deadline passes; then it is *finished* upstream (never cancelled: the code was paid for).
Both paths mark ``finish_pending`` by compare-and-set from ``active``, so whichever comes
first closes it and the provider is asked to finish exactly once (crash-safe through the
retry job, as every upstream close).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, or_, update

from core import jobs, ledger, outbox
from core.db.tables import orders
from core.errors import InvalidInput, OrderNotFound, OrderStateConflict
from core.order_states import OPEN, OrderEvent, OrderStatus, UpstreamState
from core.orders import transitions, upstream
from core.orders.upstream import after_direct_close
from core.orders.view import CancelResult, DoneResult, OrderView, load, with_
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
        # A number still open upstream is finished with the refund: no more codes for it.
        closing_upstream = order.upstream_state == UpstreamState.ACTIVE and order.activation_id
        won = await transitions.apply(
            svc,
            conn,
            order,
            OrderEvent.REFUND,
            actor=actor,
            now=now,
            detail={"reason": reason},
            notify=True,
            values=(
                dict(upstream_state=UpstreamState.FINISH_PENDING, upstream_retry_at=now, next_poll_at=None)
                if closing_upstream
                else None
            ),
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


_MARK_FINISH = (
    update(orders)
    .where(
        orders.c.id == bindparam("b_id"),
        orders.c.status.in_((OrderStatus.COMPLETED, OrderStatus.REFUNDED)),
        orders.c.upstream_state == UpstreamState.ACTIVE,
    )
    .values(
        upstream_state=UpstreamState.FINISH_PENDING,
        upstream_retry_at=bindparam("b_retry_at"),
        next_poll_at=None,
        updated_at=bindparam("b_now"),
        version=orders.c.version + 1,
    )
)


async def _mark_finish(svc: OrderService, order: OrderView, *, actor: str, reason: str) -> OrderView | None:
    """Compare-and-set ``active`` → ``finish_pending``; the order as now, or None when the
    number was already closed (by Done, the deadline, or the provider)."""
    now = svc.clock.now()
    async with svc.db.begin() as conn:
        won = await conn.execute(
            _MARK_FINISH, {"b_id": order.id, "b_retry_at": after_direct_close(now), "b_now": now}
        )
        if won.rowcount != 1:
            return None
        # Not a status change (the order stays completed): no from/to status.
        await transitions.record_event(conn, order.id, "finish", None, None, actor, {"reason": reason}, now)
    return with_(
        order,
        upstream_state=UpstreamState.FINISH_PENDING,
        upstream_retry_at=after_direct_close(now),
        version=order.version + 1,
        updated_at=now,
    )


async def done(
    svc: OrderService, order_id: str, *, user_id: int | None = None, actor: str = "user"
) -> DoneResult:
    """The buyer is done with the number: finish it upstream (after this answer)."""
    order = await svc.get_order(order_id, user_id=user_id)
    if order.status != OrderStatus.COMPLETED:
        raise OrderStateConflict(order.id, order.status, "finish")
    if order.upstream_state != UpstreamState.ACTIVE:
        return DoneResult(order, already=True)
    marked = await _mark_finish(svc, order, actor=actor, reason="done")
    if marked is None:
        current = await svc.get_order(order_id)
        if current.status != OrderStatus.COMPLETED:
            raise OrderStateConflict(current.id, current.status, "finish")
        return DoneResult(current, already=True)
    upstream.start_close(svc, marked)
    return DoneResult(marked)


async def finish_due(svc: OrderService, *, owner: str | None = None, limit: int = 100) -> int:
    """Finish upstream every open number past its deadline (and a refunded order's, at
    once). Returns how many this call marked; the provider calls run here, each retried by
    ``retry_upstream`` if it fails."""
    from core.orders.work import each

    owner = owner or svc.worker_id
    now = svc.clock.now()
    ids = await jobs.claim_orders(
        svc.db,
        owner=owner,
        now=now,
        due=(
            orders.c.upstream_state == UpstreamState.ACTIVE,
            or_(
                and_(orders.c.status == OrderStatus.COMPLETED, orders.c.expires_at <= now),
                orders.c.status == OrderStatus.REFUNDED,
            ),
        ),
        order_by=(orders.c.expires_at,),
        limit=limit,
    )
    if not ids:
        return 0

    async def one(order_id: str) -> bool:
        order = await svc.get_order(order_id)
        marked = await _mark_finish(svc, order, actor="scheduler", reason="deadline")
        if marked is None:
            return False
        await upstream.close(svc, marked)
        return True

    results = await each(svc, ids, one, owner=owner)
    return sum(1 for r in results if r)
