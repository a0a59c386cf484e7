"""Delivery statistics per provider × service × country: what routing learns from.

For every closed order that got a number we count one rental and, if its code arrived before
the deadline, one delivery and the seconds from rent to that code. Older results weigh less:
each weighs ``2^(-age / half-life)``, so a provider whose numbers stopped working loses its
good name within hours, and one that recovers regains it.

Why a fold from a watermark, run by a scheduler ticker (``fold_closed_orders``), rather than
a write in the closing path or at quote time: closing an order is the money path and belongs
to its own module; a stats write there would add a contended row to every close. Folding at
quote time would put writes on the buyer's hot path. Rates that move over hours lose nothing
by being 30 seconds late, and the one rule that must act at once (steer the buyer away from
the provider whose number just expired) reads the order itself (``core.routing``).

The fold is race-safe without locks held across anything slow: the watermark row moves by
compare-and-set as the transaction's first write, so two folders racing for the same batch
cannot both commit it (on PostgreSQL the loser waits on the row lock, then matches nothing and
rolls back; on SQLite the write lock serializes them). Only closed orders at least
``ROUTING_FOLD_LAG_SECONDS`` old are read, so a close still committing with an earlier
``closed_at`` is not jumped over.

The arithmetic (``Stats``, ``apply_outcomes``) is pure, so the routing benchmark drives the
same functions over in-memory arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.engine import insert_ignore
from core.db.tables import delivery_stats, delivery_watermark, orders
from core.order_states import OrderStatus

if TYPE_CHECKING:
    from core.clock import Clock
    from core.config import Settings
    from core.db.engine import Database

WATERMARK = "orders"
Key = tuple[str, str, str]  # (provider, service, country)


def decay(seconds: float, half_life_s: float) -> float:
    """The weight of a result ``seconds`` old (1 when new or from the future)."""
    return math.pow(2.0, -max(0.0, seconds) / half_life_s)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One closed order that had a number, as the statistics see it."""

    provider: str
    service: str
    country: str
    closed_at: datetime
    delivered: bool
    first_code_seconds: float | None = None  # delivered ones only

    @property
    def key(self) -> Key:
        return (self.provider, self.service, self.country)


@dataclass(frozen=True, slots=True)
class Stats:
    """Weighted sums as of ``decayed_at``; ``rented_total``/``delivered_total`` are plain
    counts for people reading the dashboard."""

    rented: float
    delivered: float
    first_code_seconds: float
    decayed_at: datetime
    rented_total: int = 0
    delivered_total: int = 0
    last_closed_at: datetime | None = None

    @classmethod
    def empty(cls, at: datetime) -> Stats:
        return cls(0.0, 0.0, 0.0, at)

    def at(self, when: datetime, half_life_s: float) -> Stats:
        """The same statistics decayed to ``when`` (never rejuvenated)."""
        if when <= self.decayed_at:
            return self
        f = decay((when - self.decayed_at).total_seconds(), half_life_s)
        return replace(
            self,
            rented=self.rented * f,
            delivered=self.delivered * f,
            first_code_seconds=self.first_code_seconds * f,
            decayed_at=when,
        )

    def add(self, outcome: Outcome, half_life_s: float) -> Stats:
        """This plus one result. A result older than ``decayed_at`` enters with its age's
        weight; a newer one moves the reference forward first."""
        base = self.at(outcome.closed_at, half_life_s)
        w = decay((base.decayed_at - outcome.closed_at).total_seconds(), half_life_s)
        seconds = outcome.first_code_seconds if outcome.delivered else None
        last = self.last_closed_at
        return replace(
            base,
            rented=base.rented + w,
            delivered=base.delivered + (w if outcome.delivered else 0.0),
            first_code_seconds=base.first_code_seconds
            + (w * max(0.0, seconds) if seconds is not None else 0.0),
            rented_total=base.rented_total + 1,
            delivered_total=base.delivered_total + (1 if outcome.delivered else 0),
            last_closed_at=outcome.closed_at if last is None or outcome.closed_at > last else last,
        )

    @property
    def mean_first_code_seconds(self) -> float | None:
        return self.first_code_seconds / self.delivered if self.delivered > 1e-9 else None


def apply_outcomes(
    current: Mapping[Key, Stats], outcomes: Iterable[Outcome], half_life_s: float
) -> dict[Key, Stats]:
    """The statistics of the keys ``outcomes`` touch, with them added (pure)."""
    changed: dict[Key, Stats] = {}
    for o in outcomes:
        held = changed.get(o.key) or current.get(o.key) or Stats.empty(o.closed_at)
        changed[o.key] = held.add(o, half_life_s)
    return changed


def half_life_seconds(settings: Settings) -> float:
    return settings.ROUTING_HALF_LIFE_HOURS * 3600.0


# --- from orders --------------------------------------------------------------------------

_CLOSED_AFTER = (
    select(
        orders.c.id,
        orders.c.provider,
        orders.c.service,
        orders.c.country,
        orders.c.status,
        orders.c.activation_id,
        orders.c.code,
        orders.c.created_at,
        orders.c.closed_at,
    )
    .where(
        orders.c.closed_at.is_not(None),
        orders.c.closed_at <= bindparam("cutoff"),
        or_(
            orders.c.closed_at > bindparam("after_at"),
            and_(orders.c.closed_at == bindparam("after_at"), orders.c.id > bindparam("after_id")),
        ),
    )
    .order_by(orders.c.closed_at, orders.c.id)
    .limit(bindparam("limit"))
)
_CLOSED_FIRST = (
    select(*_CLOSED_AFTER.selected_columns)
    .where(orders.c.closed_at.is_not(None), orders.c.closed_at <= bindparam("cutoff"))
    .order_by(orders.c.closed_at, orders.c.id)
    .limit(bindparam("limit"))
)


def outcome_of(row: Any, *, cancel_counts_after_s: float) -> Outcome | None:
    """What a closed order tells about its provider, or None when it tells nothing: no number
    was rented, or the buyer cancelled before a code could fairly be expected."""
    if not row.provider or not row.activation_id or row.closed_at is None:
        return None
    delivered = row.code is not None
    held_s = (row.closed_at - row.created_at).total_seconds()
    if not delivered and row.status == OrderStatus.CANCELLED and held_s < cancel_counts_after_s:
        return None
    return Outcome(
        provider=row.provider,
        service=row.service,
        country=row.country,
        closed_at=row.closed_at,
        delivered=delivered,
        # A completed order closes when its first code is recorded; it was rented moments
        # after it was created.
        first_code_seconds=max(0.0, held_s) if delivered else None,
    )


async def fold_closed_orders(
    db: Database, clock: Clock, settings: Settings, *, batch: int = 500, max_batches: int = 20
) -> int:
    """Fold the orders closed since the watermark into ``delivery_stats``; returns how many
    closed orders this call moved the watermark over (0 when another folder got there first)."""
    total = 0
    for _ in range(max_batches):
        moved = await _fold_batch(db, clock.now(), settings, batch)
        total += moved
        if moved < batch:
            break
    return total


class _Lost(Exception):
    """Another folder moved the watermark first: roll back and leave the batch to it."""


async def _fold_batch(db: Database, now: datetime, settings: Settings, batch: int) -> int:
    cutoff = now - timedelta(seconds=settings.ROUTING_FOLD_LAG_SECONDS)
    half_life = half_life_seconds(settings)
    try:
        async with db.begin() as conn:
            await conn.execute(
                insert_ignore(conn, delivery_watermark),
                {"name": WATERMARK, "closed_at": None, "order_id": None, "folded": 0, "updated_at": now},
            )
            mark = (
                await conn.execute(select(delivery_watermark).where(delivery_watermark.c.name == WATERMARK))
            ).one()
            if mark.closed_at is None:
                rows = (await conn.execute(_CLOSED_FIRST, {"cutoff": cutoff, "limit": batch})).all()
            else:
                rows = (
                    await conn.execute(
                        _CLOSED_AFTER,
                        {
                            "cutoff": cutoff,
                            "after_at": mark.closed_at,
                            "after_id": mark.order_id,
                            "limit": batch,
                        },
                    )
                ).all()
            if not rows:
                return 0
            last = rows[-1]
            moved = await conn.execute(
                update(delivery_watermark)
                .where(
                    delivery_watermark.c.name == WATERMARK,
                    delivery_watermark.c.closed_at.is_not_distinct_from(mark.closed_at),
                    delivery_watermark.c.order_id.is_not_distinct_from(mark.order_id),
                )
                .values(
                    closed_at=last.closed_at,
                    order_id=last.id,
                    folded=delivery_watermark.c.folded + len(rows),
                    updated_at=now,
                )
            )
            if moved.rowcount != 1:
                raise _Lost
            cancel_after = settings.ROUTING_CANCEL_COUNTS_AFTER_SECONDS
            outcomes = [
                o for r in rows if (o := outcome_of(r, cancel_counts_after_s=cancel_after)) is not None
            ]
            if outcomes:
                await _write(conn, outcomes, half_life, now)
            return len(rows)
    except _Lost:
        return 0


async def _write(conn: AsyncConnection, outcomes: list[Outcome], half_life: float, now: datetime) -> None:
    """Add ``outcomes`` to their rows. Only the folder holding the watermark's compare-and-set
    gets here, so reading the rows and writing them back cannot interleave with another fold."""
    keys = {o.key for o in outcomes}
    current = await _load(conn, keys)
    changed = apply_outcomes(current, sorted(outcomes, key=lambda o: o.closed_at), half_life)
    for key, stats in changed.items():
        values = _row(stats)
        if key in current:
            await conn.execute(
                update(delivery_stats)
                .where(
                    delivery_stats.c.provider == key[0],
                    delivery_stats.c.service == key[1],
                    delivery_stats.c.country == key[2],
                )
                .values(**values)
            )
        else:
            await conn.execute(
                delivery_stats.insert(), {"provider": key[0], "service": key[1], "country": key[2], **values}
            )


def _row(stats: Stats) -> dict[str, Any]:
    return {
        "rented": stats.rented,
        "delivered": stats.delivered,
        "first_code_seconds": stats.first_code_seconds,
        "rented_total": stats.rented_total,
        "delivered_total": stats.delivered_total,
        "decayed_at": stats.decayed_at,
        "last_closed_at": stats.last_closed_at,
    }


def _stats(row: Any) -> Stats:
    return Stats(
        rented=float(row.rented),
        delivered=float(row.delivered),
        first_code_seconds=float(row.first_code_seconds),
        decayed_at=row.decayed_at,
        rented_total=int(row.rented_total),
        delivered_total=int(row.delivered_total),
        last_closed_at=row.last_closed_at,
    )


async def _load(conn: AsyncConnection, keys: set[Key]) -> dict[Key, Stats]:
    if not keys:
        return {}
    providers = {k[0] for k in keys}
    services = {k[1] for k in keys}
    result = await conn.execute(
        select(delivery_stats).where(
            delivery_stats.c.provider.in_(providers), delivery_stats.c.service.in_(services)
        )
    )
    loaded = {(r.provider, r.service, r.country): _stats(r) for r in result}
    return {k: v for k, v in loaded.items() if k in keys}


_FOR_PAIR = select(delivery_stats).where(
    delivery_stats.c.service == bindparam("service"), delivery_stats.c.country == bindparam("country")
)


async def for_pair(conn: AsyncConnection, service: str, country: str) -> dict[str, Stats]:
    """``{provider: stats}`` for one service and country (what routing a purchase needs)."""
    result = await conn.execute(_FOR_PAIR, {"service": service, "country": country})
    return {r.provider: _stats(r) for r in result}


@dataclass(frozen=True, slots=True)
class StatsRow:
    provider: str
    service: str
    country: str
    stats: Stats


async def all_stats(db: Database, *, providers: Iterable[str] | None = None) -> list[StatsRow]:
    """Every combination on record (status screens), most rentals first."""
    stmt = select(delivery_stats)
    if providers is not None:
        stmt = stmt.where(delivery_stats.c.provider.in_(list(providers)))
    async with db.read() as conn:
        rows = (await conn.execute(stmt)).all()
    out = [StatsRow(r.provider, r.service, r.country, _stats(r)) for r in rows]
    out.sort(key=lambda r: (-r.stats.rented_total, r.provider, r.service, r.country))
    return out


async def watermark(db: Database) -> tuple[datetime | None, int]:
    """Where the fold stands: the ``closed_at`` of the last folded order and how many it folded."""
    async with db.read() as conn:
        row = (
            await conn.execute(select(delivery_watermark).where(delivery_watermark.c.name == WATERMARK))
        ).one_or_none()
    return (row.closed_at, int(row.folded)) if row is not None else (None, 0)
