"""Retention: keep the shop's logs bounded; never touch its books.

What goes, and only when it is older than its period:

* the update log (``processed_updates``): Telegram redelivers an update for at most a day,
  so a week of ids is plenty to drop duplicates;
* settled outbox rows (sent, failed for good, unreachable) — never a pending one, which is a
  notification still owed to someone;
* order events of closed orders (closed longer ago than the period, upstream settled) — an
  open order's history is what staff need to resolve it;
* expired quotes that no order names.

The books — accounts, transfers, orders, order messages, the audit log, reconciliation
runs — are never deleted here: they are what proves no user lost money.

Why batches: on SQLite a delete holds the one write lock for as long as it runs, and on
PostgreSQL it holds its row locks until commit, so a single ``DELETE`` of a month of rows
would stall every purchase behind it. Each batch picks at most ``batch_size`` ids in a read
(off the write lock), then deletes exactly those ids in a short write transaction that
re-checks the condition, and pauses before the next one so waiting writers go first. A run
stops after ``max_rows_per_run`` rows of each kind; the next run goes on from there.
Running twice, or in two processes at once, deletes nothing extra: every delete is by id and
condition, and a row already gone is simply not counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, delete, exists, or_, select
from sqlalchemy.sql.schema import Column, Table

from core.clock import Clock
from core.db.engine import Database
from core.db.tables import order_events, orders, outbox, processed_updates, quotes
from core.order_states import OPEN, OrderStatus

# Outbox rows whose fate is settled; anything else (pending, or a status added later) stays.
SETTLED_OUTBOX = ("sent", "failed", "unreachable")
# Orders whose user-facing life is over. A completed order may still be refunded by staff;
# that writes a new event, which is young and therefore kept.
CLOSED_ORDERS = tuple(sorted(str(s) for s in OrderStatus if s not in OPEN))
# Upstream bookkeeping still owed for an order: its events stay until it is done.
UPSTREAM_PENDING = ("active", "cancel_pending", "finish_pending")

UPDATE_LOG, OUTBOX, ORDER_EVENTS, QUOTES = "update_log", "outbox", "order_events", "quotes"


class RetentionSettings(Protocol):
    RETENTION_UPDATE_LOG_DAYS: int
    RETENTION_OUTBOX_DAYS: int
    RETENTION_ORDER_EVENTS_DAYS: int
    RETENTION_QUOTES_HOURS: int
    RETENTION_BATCH_SIZE: int
    RETENTION_MAX_ROWS_PER_RUN: int


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    update_log: timedelta = timedelta(days=7)
    outbox: timedelta = timedelta(days=7)
    order_events: timedelta = timedelta(days=90)
    quotes: timedelta = timedelta(hours=24)
    batch_size: int = 500
    max_rows_per_run: int = 50_000
    # Between batches: long enough for a writer of another process (which retries a busy
    # SQLite BEGIN every few milliseconds) to get in.
    pause_s: float = 0.05

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_rows_per_run < 1:
            raise ValueError("batch_size and max_rows_per_run must be positive")
        if min(self.update_log, self.outbox, self.order_events, self.quotes) <= timedelta(0):
            raise ValueError("retention periods must be positive")

    @classmethod
    def from_settings(cls, s: RetentionSettings, **overrides: Any) -> RetentionPolicy:
        values: dict[str, Any] = dict(
            update_log=timedelta(days=s.RETENTION_UPDATE_LOG_DAYS),
            outbox=timedelta(days=s.RETENTION_OUTBOX_DAYS),
            order_events=timedelta(days=s.RETENTION_ORDER_EVENTS_DAYS),
            quotes=timedelta(hours=s.RETENTION_QUOTES_HOURS),
            batch_size=s.RETENTION_BATCH_SIZE,
            max_rows_per_run=s.RETENTION_MAX_ROWS_PER_RUN,
        )
        values.update(overrides)
        return cls(**values)


@dataclass(slots=True)
class RetentionReport:
    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    # Kinds that hit ``max_rows_per_run``: more may be left for the next run.
    capped: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


@dataclass(frozen=True, slots=True)
class _Target:
    kind: str
    table: Table
    key: Column[Any]
    condition: Callable[[datetime], ColumnElement[bool]]
    period: Callable[[RetentionPolicy], timedelta]


def _update_log(cutoff: datetime) -> ColumnElement[bool]:
    return processed_updates.c.received_at < cutoff


def _outbox(cutoff: datetime) -> ColumnElement[bool]:
    return and_(
        outbox.c.status.in_(SETTLED_OUTBOX),
        outbox.c.created_at < cutoff,
        or_(outbox.c.sent_at.is_(None), outbox.c.sent_at < cutoff),
    )


def _order_events(cutoff: datetime) -> ColumnElement[bool]:
    closed = select(orders.c.id).where(
        orders.c.status.in_(CLOSED_ORDERS),
        orders.c.closed_at.is_not(None),
        orders.c.closed_at < cutoff,
        orders.c.upstream_state.not_in(UPSTREAM_PENDING),
    )
    return and_(order_events.c.created_at < cutoff, order_events.c.order_id.in_(closed))


def _quotes(cutoff: datetime) -> ColumnElement[bool]:
    # No foreign key points at quotes (orders.quote_id is a plain column), but an order's
    # quote is part of its story, so a quote any order names is kept.
    named = exists().where(orders.c.quote_id == quotes.c.id)
    return and_(quotes.c.expires_at < cutoff, ~named)


TARGETS: tuple[_Target, ...] = (
    _Target(
        UPDATE_LOG, processed_updates, processed_updates.c.update_id, _update_log, lambda p: p.update_log
    ),
    _Target(OUTBOX, outbox, outbox.c.id, _outbox, lambda p: p.outbox),
    _Target(ORDER_EVENTS, order_events, order_events.c.id, _order_events, lambda p: p.order_events),
    _Target(QUOTES, quotes, quotes.c.id, _quotes, lambda p: p.quotes),
)
# The tables a run may delete from; a test holds every other table still.
PRUNED_TABLES = frozenset(t.table.name for t in TARGETS)


async def _delete_batch(db: Database, target: _Target, cutoff: datetime, limit: int) -> int | None:
    """One batch: ids picked in a read, deleted in a short write. None when nothing is due."""
    condition = target.condition(cutoff)
    async with db.read() as conn:
        ids: Sequence[Any] = (await conn.scalars(select(target.key).where(condition).limit(limit))).all()
    if not ids:
        return None
    async with db.begin() as conn:
        result = await conn.execute(delete(target.table).where(target.key.in_(ids), target.condition(cutoff)))
    return int(result.rowcount or 0)


async def prune(db: Database, clock: Clock, policy: RetentionPolicy | None = None) -> RetentionReport:
    """Delete what the policy no longer keeps, batch by batch, up to the per-run cap."""
    policy = policy or RetentionPolicy()
    now = clock.now()
    report = RetentionReport()
    for target in TARGETS:
        cutoff = now - target.period(policy)
        done = 0
        while done < policy.max_rows_per_run:
            limit = min(policy.batch_size, policy.max_rows_per_run - done)
            deleted = await _delete_batch(db, target, cutoff, limit)
            if deleted is None:
                break
            report.batches += 1
            done += deleted
            await asyncio.sleep(policy.pause_s)
        else:
            report.capped.append(target.kind)
        report.deleted[target.kind] = done
    return report
