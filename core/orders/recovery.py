"""Settling what the normal path left behind: expiring orders past their deadline,
recovering ``reserving`` orders whose rent outcome is unknown, and the safety net for holds
past their timeout. Each claims its orders with a lease (``work``).

A rent whose outcome is unknown (HTTP 500, an HTML page, a dropped connection) is first
resolved in the background a few seconds after the failure (``resolve_soon``): the buyer is
watching "Getting your number…" with the price held, and the provider can usually tell us at
once — handler_api's list of active activations, 5sim's order history, TextVerified's
idempotent retry. The recovery job (``RECOVERY_AFTER_SECONDS``) stays the fallback for
whatever the fast attempt could not settle (provider down, process stopped)."""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from core import jobs
from core.clock import sleep
from core.db.tables import orders, transfers
from core.ledger import TransferKind
from core.order_states import OPEN, OrderStatus
from core.orders.purchase import assign
from core.orders.view import OrderView
from core.orders.work import each
from core.providers.base import RentRequest
from core.providers.errors import BusinessError, ProviderError

if TYPE_CHECKING:
    from core.orders.service import OrderService

log = logging.getLogger("core.orders")

RECOVERY_CONCURRENCY = 1  # two at once could both take the same unowned activation


async def expire_due(svc: OrderService, *, owner: str | None = None, limit: int = 100) -> int:
    owner = owner or svc.worker_id
    now = svc.clock.now()
    async with svc.db.begin() as conn:
        # Completed orders polled for another code stop being polled at their deadline.
        await conn.execute(
            update(orders)
            .where(
                orders.c.status == OrderStatus.COMPLETED,
                orders.c.next_poll_at.is_not(None),
                orders.c.expires_at <= now,
            )
            .values(next_poll_at=None)
        )
    ids = await jobs.claim_orders(
        svc.db,
        owner=owner,
        now=now,
        due=(orders.c.status == OrderStatus.WAITING, orders.c.expires_at <= now),
        order_by=(orders.c.expires_at,),
        limit=limit,
    )
    if not ids:
        return 0
    results = await each(svc, ids, lambda oid: svc.expire(oid), owner=owner)
    return sum(1 for r in results if r is not None and r.status == OrderStatus.EXPIRED)


async def recover_reserving(
    svc: OrderService,
    *,
    owner: str | None = None,
    limit: int = 50,
) -> int:
    owner = owner or svc.worker_id
    now = svc.clock.now()
    threshold = now - timedelta(seconds=svc.settings.RECOVERY_AFTER_SECONDS)
    ids = await jobs.claim_orders(
        svc.db,
        owner=owner,
        now=now,
        due=(orders.c.status == OrderStatus.RESERVING, orders.c.updated_at <= threshold),
        order_by=(orders.c.created_at,),
        limit=limit,
    )
    if not ids:
        return 0
    results = await each(svc, ids, svc.recover_order, owner=owner, concurrency=RECOVERY_CONCURRENCY)
    return sum(1 for r in results if r is not None and r.status != OrderStatus.RESERVING)


async def recover_order(svc: OrderService, order_id: str) -> OrderView:
    try:
        return await _recover_one(svc, order_id)
    except ProviderError as exc:
        log.info("recovery of %s deferred: %s", order_id, exc)
        return await svc.get_order(order_id)


async def _recover_one(svc: OrderService, order_id: str) -> OrderView:
    order = await svc.get_order(order_id)
    if order.status != OrderStatus.RESERVING:
        return order
    provider = svc.providers.get(order.provider or "")
    if provider is None:
        return await svc.fail(order_id, reason="provider no longer configured", actor="recovery")
    if provider.capabilities.idempotent_rent:
        try:
            rental = await provider.rent(
                RentRequest(order.service, order.country, max_cost=order.price, idempotency_key=order.id)
            )
        except BusinessError as exc:
            return await svc.fail(order_id, reason=f"recovery: {exc}", actor="recovery")
        return await assign(svc, order, order.provider or "", rental, actor="recovery")
    active = await provider.active_activations()
    owned: set[str] = set()
    if active:
        async with svc.db.read() as conn:
            owned = set(
                (
                    await conn.scalars(
                        select(orders.c.activation_id).where(
                            orders.c.provider == order.provider,
                            orders.c.activation_id.in_([a.activation_id for a in active]),
                        )
                    )
                ).all()
            )
    window = timedelta(seconds=svc.settings.RECOVERY_AFTER_SECONDS * 2)
    for rental in active:
        if rental.activation_id in owned:
            continue
        if rental.service not in (None, order.service) or rental.country not in (None, order.country):
            continue
        if rental.created_at is not None and abs(rental.created_at - order.created_at) > window:
            continue
        return await assign(svc, order, order.provider or "", rental, actor="recovery")
    return await svc.fail(order_id, reason="recovery: the provider has no such activation", actor="recovery")


def _hold_overdue(cutoff: datetime) -> Any:
    res = transfers.alias("res")
    return (
        select(transfers.c.id)
        .where(
            transfers.c.id == orders.c.hold_transfer_id,
            transfers.c.kind == TransferKind.HOLD,
            transfers.c.timeout_at <= cutoff,
            ~select(res.c.id).where(res.c.pending_id == transfers.c.id).exists(),
        )
        .exists()
    )


async def resolve_overdue_holds(
    svc: OrderService,
    *,
    owner: str | None = None,
    grace_seconds: float = 0,
    limit: int = 100,
) -> int:
    owner = owner or svc.worker_id
    now = svc.clock.now()
    cutoff = now - timedelta(seconds=grace_seconds)
    ids = await jobs.claim_orders(
        svc.db,
        owner=owner,
        now=now,
        due=(orders.c.status.in_(tuple(OPEN)), _hold_overdue(cutoff)),
        order_by=(orders.c.created_at,),
        limit=limit,
    )
    if not ids:
        return 0
    results = await each(svc, ids, lambda oid: svc.settle_overdue(oid, actor="safety_net"), owner=owner)
    return sum(1 for r in results if r is not None and not r.is_open)


async def settle_overdue(svc: OrderService, order_id: str, *, actor: str) -> OrderView:
    order = await svc.get_order(order_id)
    if order.status == OrderStatus.WAITING:
        return await svc.expire(order_id, actor=actor)
    if order.status == OrderStatus.RESERVING:
        return await svc.fail(order_id, reason="hold timed out while reserving", actor=actor)
    return order


# --- unknown outcomes, resolved in seconds ----------------------------------------------------

# Fast recoveries in flight, per service. Kept apart from ``OrderService.background`` (which
# shutdown drains): a fast recovery cut short loses nothing, the recovery job takes over.
_FAST: weakref.WeakKeyDictionary[OrderService, set[asyncio.Task[None]]] = weakref.WeakKeyDictionary()
# Those past their delay (working, not sleeping): what ``drain_fast`` waits for.
_AWAKE: weakref.WeakKeyDictionary[OrderService, set[asyncio.Task[None]]] = weakref.WeakKeyDictionary()
# One fast recovery at a time per service: two could both take the same unowned activation.
_FAST_LOCKS: weakref.WeakKeyDictionary[OrderService, asyncio.Lock] = weakref.WeakKeyDictionary()


def resolve_soon(svc: OrderService, order_id: str) -> None:
    """Settle a ``reserving`` order ``RECOVERY_FAST_AFTER_SECONDS`` after its rent's outcome
    was lost, in the background (the buyer's reply does not wait for it). The result reaches
    the buyer through the order's usual notice (number or refund)."""
    delay = svc.settings.RECOVERY_FAST_AFTER_SECONDS
    if delay <= 0:
        return

    async def run() -> None:
        try:
            await sleep(svc.clock, delay)
            _AWAKE.setdefault(svc, set()).add(task)
            await resolve_now(svc, order_id)
        except Exception:
            log.exception("order %s: fast recovery failed; the recovery job takes over", order_id)

    task = asyncio.get_running_loop().create_task(run(), name=f"fast-recovery:{order_id}")
    tasks = _FAST.setdefault(svc, set())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    task.add_done_callback(lambda t: _AWAKE.get(svc, set()).discard(t))


async def resolve_now(svc: OrderService, order_id: str) -> OrderView | None:
    """Recover one ``reserving`` order now under a lease (so the recovery job and a second
    process leave it alone meanwhile); None when it is no longer reserving or someone else
    holds it, or when it is already the recovery job's. No transaction stays open across the
    provider call (``recover_order``)."""
    lock = _FAST_LOCKS.setdefault(svc, asyncio.Lock())
    owner = svc.worker_id
    async with lock:
        now = svc.clock.now()
        job_takes_over = now - timedelta(seconds=svc.settings.RECOVERY_AFTER_SECONDS)
        ids = await jobs.claim_orders(
            svc.db,
            owner=owner,
            now=now,
            # Once the order is old enough for the recovery job, it is the job's alone.
            due=(
                orders.c.id == order_id,
                orders.c.status == OrderStatus.RESERVING,
                orders.c.updated_at > job_takes_over,
            ),
            limit=1,
        )
        if not ids:
            return None
        try:
            return await recover_order(svc, order_id)
        finally:
            await jobs.release_orders(svc.db, ids, owner)


async def drain_fast(svc: OrderService) -> None:
    """Wait for the fast recoveries whose delay is over (tests: after moving the clock, what
    that woke has run). Those still waiting for their time are left waiting."""
    await asyncio.sleep(0)  # let the ones the clock just woke start
    tasks = set(_AWAKE.get(svc, ()))
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
