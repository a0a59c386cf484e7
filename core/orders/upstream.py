"""Closing activations at the provider: cancel or finish, with retries.

What the user sees never waits for this. A transition that closes an order marks its
upstream state ``cancel_pending`` (or ``finish_pending``) in the same transaction as its
money; the provider call follows after the commit, in a background task of this process
(``start_close``) or, if that attempt cannot finish (a crash, a provider that is down),
in the ``retry_upstream`` job. The job leaves a row alone for ``DIRECT_CLOSE_GRACE_S`` after
the commit, so it never races the direct attempt into a second call at the provider.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, update

from core import jobs
from core.db.tables import orders
from core.order_states import UPSTREAM_PENDING, UpstreamState
from core.orders.view import OrderView
from core.providers.errors import AlreadyClosed, EarlyCancelDenied, ProviderError

if TYPE_CHECKING:
    from core.orders.service import OrderService

log = logging.getLogger("core.orders")

DIRECT_CLOSE_GRACE_S = 60
EARLY_CANCEL_RETRY_S = 60


def after_direct_close(now: datetime) -> datetime:
    """When the retry job may take over an upstream close that this process makes itself
    right after committing: only if that direct attempt never recorded an outcome (a crash),
    so a scheduler's retry cannot race it into a second call at the provider."""
    return now + timedelta(seconds=DIRECT_CLOSE_GRACE_S)


async def cancel_quietly(svc: OrderService, provider: str, activation_id: str) -> None:
    """Give back a rental nobody owns; the reconciliation's orphan sweep retries a failure."""
    try:
        await svc.providers[provider].cancel(activation_id)
    except ProviderError as exc:
        log.warning(
            "cancel of orphan %s at %s failed: %s (the orphan sweep will retry)", activation_id, provider, exc
        )


async def close(svc: OrderService, order: OrderView) -> dict[str, Any]:
    """Cancel (or finish) the activation upstream; on failure schedule a retry.
    Returns the upstream columns it wrote."""
    if not order.activation_id or order.provider is None or order.provider not in svc.providers:
        return {}
    finishing = order.upstream_state == UpstreamState.FINISH_PENDING
    closed = UpstreamState.FINISHED if finishing else UpstreamState.CANCELLED
    provider = svc.providers[order.provider]
    try:
        if finishing:
            await provider.finish(order.activation_id)
        else:
            await provider.cancel(order.activation_id)
        done: dict[str, Any] = {"upstream_state": closed, "upstream_retry_at": None}
    except AlreadyClosed:
        done = {"upstream_state": closed, "upstream_retry_at": None}
    except EarlyCancelDenied as exc:
        done = {
            "upstream_retry_at": exc.retry_at or svc.clock.now() + timedelta(seconds=EARLY_CANCEL_RETRY_S)
        }
    except ProviderError as exc:
        wait = svc.upstream_backoff.delay(order.upstream_attempts)
        log.info("upstream close of %s failed (%s); retry in %.0fs", order.id, exc, wait)
        done = {"upstream_retry_at": svc.clock.now() + timedelta(seconds=wait)}
    async with svc.db.begin() as conn:
        await conn.execute(
            update(orders)
            .where(orders.c.id == order.id, orders.c.upstream_state == order.upstream_state)
            .values(upstream_attempts=orders.c.upstream_attempts + 1, **done)
        )
    return {**done, "upstream_attempts": order.upstream_attempts + 1}


def start_close(svc: OrderService, order: OrderView) -> None:
    """Close the order upstream in the background, after the caller has answered.

    The task is kept until done (``OrderService.drain_background`` waits for them); if it
    fails or the process stops first, ``retry_upstream`` takes the order over once
    ``upstream_retry_at`` is due."""
    if not order.activation_id:
        return

    async def run() -> None:
        try:
            await close(svc, order)
        except Exception:
            log.exception("order %s: closing it upstream failed; the retry job takes over", order.id)

    task = asyncio.get_running_loop().create_task(run(), name=f"close-upstream:{order.id}")
    svc.background.add(task)
    task.add_done_callback(svc.background.discard)


async def retry_upstream(svc: OrderService, *, owner: str | None = None, limit: int = 100) -> int:
    """Retry pending upstream cancels and finishes that are due, each claimed with a
    lease so two schedulers never call the provider twice for one. ``close`` backs off
    exponentially and honours an early-cancel window's retry time. Returns how many were
    attempted."""
    from core.orders.work import each

    owner = owner or svc.worker_id
    now = svc.clock.now()
    ids = await jobs.claim_orders(
        svc.db,
        owner=owner,
        now=now,
        due=(
            orders.c.upstream_state.in_(tuple(UPSTREAM_PENDING)),
            or_(orders.c.upstream_retry_at.is_(None), orders.c.upstream_retry_at <= now),
        ),
        order_by=(orders.c.upstream_retry_at,),
        limit=limit,
    )

    async def one(order_id: str) -> None:
        order = await svc.get_order(order_id)
        if order.upstream_state in UPSTREAM_PENDING:
            await close(svc, order)

    await each(svc, ids, one, owner=owner)
    return len(ids)
