"""Polling providers for codes: claim the due orders, fetch their statuses in batches, record
what is new, and close what the provider closed without a code.

Polling backs off by order age: codes mostly arrive within minutes, and a batch status read
makes a poll cheap, so the full rate lasts five minutes. A completed order whose number is
still open (more codes until Done or the deadline) is polled at OPEN_ORDER_POLL_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, literal, or_, update

from core import jobs
from core.db.chunks import chunks
from core.db.tables import UTCDateTime, orders
from core.order_states import OrderStatus, UpstreamState
from core.orders import codes
from core.orders.view import OrderView, known_messages, load_many, message_id
from core.providers.base import ActivationState, ActivationStatus
from core.providers.errors import ProviderError

if TYPE_CHECKING:
    from core.orders.service import OrderService

log = logging.getLogger("core.orders")

# (younger than N seconds, interval × factor); older orders are polled every interval ×
# POLL_BACKOFF_MAX_FACTOR, at most POLL_BACKOFF_CAP_S.
POLL_BACKOFF = ((300, 1), (900, 2))
POLL_BACKOFF_MAX_FACTOR = 4
POLL_BACKOFF_CAP_S = 30
POLL_CONCURRENCY = 10
APPLY_CONCURRENCY = 8  # orders written at once per provider when one at a time (a close, a retry)
RECORD_BATCH = 100  # orders recorded per transaction: bounds how long one holds the writer
POLL_ROUNDS_IN_FLIGHT = 3


def _next_poll_at(svc: OrderService, now: datetime, tick_seconds: float) -> Any:
    """When a just-claimed order is due again: every poll interval while it is young, less
    often as it ages (most codes arrive in the first minutes). One ticker period early, so
    that with discrete ticks the gap between two polls never exceeds it."""
    interval = svc.settings.SMS_POLL_INTERVAL_SECONDS
    slack = min(max(tick_seconds, 0.0), interval / 2)
    steps = [
        (age, now + timedelta(seconds=max(interval * factor - slack, 0.1))) for age, factor in POLL_BACKOFF
    ]
    last = now + timedelta(
        seconds=max(min(interval * POLL_BACKOFF_MAX_FACTOR, max(interval, POLL_BACKOFF_CAP_S)) - slack, 0.1)
    )
    # A completed order's open number waits for a code the buyer asked for (Another code
    # polls it at once): its own, slower cadence.
    open_at = now + timedelta(seconds=max(svc.settings.OPEN_ORDER_POLL_SECONDS - slack, 0.1))
    return case(
        (orders.c.status == OrderStatus.COMPLETED, literal(open_at, UTCDateTime())),
        *(
            (orders.c.created_at > now - timedelta(seconds=age), literal(at, UTCDateTime()))
            for age, at in steps
        ),
        else_=literal(last, UTCDateTime()),
    )


def _due_where(now: datetime) -> list[Any]:
    return [
        orders.c.next_poll_at <= now,
        or_(
            orders.c.status == OrderStatus.WAITING,
            and_(
                orders.c.status == OrderStatus.COMPLETED,
                orders.c.upstream_state == UpstreamState.ACTIVE,
                orders.c.expires_at > now,
            ),
        ),
    ]


async def poll_due(
    svc: OrderService,
    *,
    owner: str | None = None,
    limit: int = 1000,
    tick_seconds: float = 0.0,
    max_rounds: int = 50,
) -> int:
    owner = owner or svc.worker_id
    rounds: set[asyncio.Task[int]] = set()
    recorded = 0
    try:
        for _ in range(max_rounds):
            now = svc.clock.now()
            due_again = _next_poll_at(svc, now, tick_seconds)
            ids = await jobs.claim_orders(
                svc.db,
                owner=owner,
                now=now,
                due=_due_where(now),
                order_by=(orders.c.next_poll_at,),
                limit=limit,
                values={"next_poll_at": due_again, "lease_until": due_again},
            )
            if not ids:
                break
            # Rounds overlap (a few at a time): the next batch is claimed and fetched while
            # the codes of the previous one are still being written.
            rounds.add(asyncio.create_task(poll_orders(svc, ids, owner=owner)))
            if len(rounds) >= POLL_ROUNDS_IN_FLIGHT:
                done, rounds = await asyncio.wait(rounds, return_when=asyncio.FIRST_COMPLETED)
                recorded += sum(t.result() for t in done)
            if len(ids) < limit:
                break
        recorded += sum(await asyncio.gather(*rounds))
    finally:
        for task in rounds:
            task.cancel()
    return recorded


async def poll_orders(
    svc: OrderService,
    order_ids: Iterable[str],
    *,
    owner: str | None = None,
) -> int:
    ids = list(order_ids)
    async with svc.db.read() as conn:
        views = await load_many(conn, ids)
    by_provider: dict[str, list[OrderView]] = defaultdict(list)
    for order in views:
        if order.activation_id and order.provider is not None and order.provider in svc.providers:
            by_provider[order.provider].append(order)
    results = await asyncio.gather(*(_poll_provider(svc, name, group) for name, group in by_provider.items()))
    if owner is not None:
        await jobs.release_orders(svc.db, ids, owner)
    return sum(results)


async def _fetch_statuses(
    svc: OrderService,
    name: str,
    group: list[OrderView],
) -> dict[str, ActivationStatus]:
    provider = svc.providers[name]
    aids = [o.activation_id for o in group if o.activation_id]
    if provider.capabilities.batch_status:
        try:
            return await provider.batch_status(aids)
        except ProviderError as exc:
            log.info("batch status of %d activations at %s failed: %s", len(aids), name, exc)
            return {}
    statuses: dict[str, ActivationStatus] = {}
    sem = asyncio.Semaphore(POLL_CONCURRENCY)

    async def one(aid: str) -> None:
        async with sem:
            try:
                statuses[aid] = await provider.status(aid)
            except ProviderError as exc:
                log.info("status of %s at %s failed: %s", aid, name, exc)

    await asyncio.gather(*(one(a) for a in aids))
    return statuses


async def _poll_provider(svc: OrderService, name: str, group: list[OrderView]) -> int:
    statuses = await _fetch_statuses(svc, name, group)
    if not statuses:
        return 0
    with_messages = [
        o.id for o in group if (s := statuses.get(o.activation_id or "")) is not None and s.messages
    ]
    known: set[tuple[str, str]] = set()
    if with_messages:
        async with svc.db.read() as conn:
            known = await known_messages(conn, with_messages)
    finished_upstream: list[str] = []
    changed: list[tuple[OrderView, ActivationStatus]] = []
    for order in group:
        status = statuses.get(order.activation_id or "")
        if status is None:
            continue  # unknown upstream right now: polled again later, reconciled if it lasts
        fresh = tuple(m for m in status.messages if (order.id, message_id(m)) not in known)
        closed = status.state not in (ActivationState.WAITING, ActivationState.CODE)
        if closed and order.status == OrderStatus.COMPLETED and not fresh:
            finished_upstream.append(order.id)
        elif fresh or (closed and order.status == OrderStatus.WAITING):
            changed.append((order, replace(status, messages=fresh)))
    recorded = await _record_polled(svc, [(o, s) for o, s in changed if s.messages])
    sem = asyncio.Semaphore(APPLY_CONCURRENCY)

    async def settle(order: OrderView, status: ActivationStatus) -> OrderView | None:
        if status.messages:
            current = recorded.get(order.id)
            if current is None:
                return None  # not recorded (logged): polled again later
            order = current
        async with sem:
            try:
                return await codes.fail_if_closed(svc, order, status, actor="scheduler")
            except Exception:
                log.exception("order %s: recording its status failed; polled again later", order.id)
                return None

    afters = await asyncio.gather(*(settle(o, s) for o, s in changed))
    first_codes = sum(
        1
        for (before, _), after in zip(changed, afters, strict=True)
        if after is not None
        and before.status == OrderStatus.WAITING
        and after.status == OrderStatus.COMPLETED
    )
    if finished_upstream:
        # Closed upstream after its code (the provider's own deadline): nothing more can
        # arrive, stop polling it; an open number is closed in our books too, so neither Done
        # nor the deadline job asks the provider to finish it again.
        async with svc.db.begin() as conn:
            await conn.execute(
                update(orders)
                .where(orders.c.id.in_(finished_upstream), orders.c.status == OrderStatus.COMPLETED)
                .values(next_poll_at=None)
            )
            await conn.execute(
                update(orders)
                .where(
                    orders.c.id.in_(finished_upstream),
                    orders.c.status == OrderStatus.COMPLETED,
                    orders.c.upstream_state == UpstreamState.ACTIVE,
                )
                .values(upstream_state=UpstreamState.FINISHED, upstream_retry_at=None)
            )
    return first_codes


async def _record_polled(
    svc: OrderService, polled: list[tuple[OrderView, ActivationStatus]]
) -> dict[str, OrderView | None]:
    """Record a round's new messages, ``RECORD_BATCH`` orders per transaction. If a batch
    fails as a whole, its orders are recorded one by one, so one bad order (or a deadlock
    victim) holds back no other; an order that fails alone maps to None."""
    recorded: dict[str, OrderView | None] = {}
    sem = asyncio.Semaphore(APPLY_CONCURRENCY)
    for chunk in chunks(polled, RECORD_BATCH):
        try:
            views = await svc.record_many([(o.id, s.messages) for o, s in chunk], actor="scheduler")
            recorded.update((o.id, v) for (o, _), v in zip(chunk, views, strict=True))
            continue
        except Exception:
            log.exception(
                "recording the messages of %d orders together failed; recording them one by one", len(chunk)
            )

        async def one(order: OrderView, status: ActivationStatus) -> None:
            async with sem:
                try:
                    recorded[order.id] = await svc.record_messages(
                        order.id, status.messages, actor="scheduler"
                    )
                except Exception:
                    log.exception("order %s: recording its messages failed; polled again later", order.id)
                    recorded[order.id] = None

        await asyncio.gather(*(one(o, s) for o, s in chunk))
    return recorded
