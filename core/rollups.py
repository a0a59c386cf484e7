"""Daily rollups: the overview's thirty days of figures, pre-aggregated per UTC day.

Charting thirty days straight from ``orders`` and ``transfers`` would scan tens of thousands
of rows per request on a large shop; a day's figures are instead computed once from that
day's slice of the ``created_at`` indexes and stored as ``(day, metric, key) → (n, total)``.

A day keeps changing until its last orders have closed (an order lives at most about half an
hour, a hold a little longer), so a day counts as *settled* once it has been computed
``SETTLE`` after it ended; the refresh ticker recomputes every unsettled day of the window
(today's partial day every run, yesterday until it settles) and skips the settled ones. A
recomputation replaces the day's rows in one transaction, so readers never see half a day.

Metrics (``n`` is a count, ``total`` an amount in minor units unless said otherwise):

* ``orders`` — orders created that day.
* ``revenue`` — captures that day (n captures, total captured).
* ``delivery_provider`` / ``delivery_service`` / ``delivery_country`` — orders created that
  day that have finished: n finished, total of them that delivered a code.
* ``first_code`` — captures that day by seconds from order to first code (key: bucket).
  ``first_code_sum``: n captures, total seconds (for the mean).
* ``money_back`` — voids and refunds that day by reason (key: expired / cancelled / failed
  / staff_refund / other).
* ``topup`` — top-ups that day by method (key: the payment source, e.g. ``stars``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.engine import Database, insert_ignore
from core.db.tables import daily_rollups, orders, rollup_days, transfers

WINDOW_DAYS = 30
SETTLE = timedelta(hours=2)
FINAL_STATUSES = ("completed", "cancelled", "expired", "failed", "refunded")
DELIVERED_STATUSES = ("completed", "refunded")
# Upper bounds (seconds) of the time-to-first-code buckets; the last is open-ended.
FIRST_CODE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("0-30s", 30),
    ("30-60s", 60),
    ("1-2m", 120),
    ("2-5m", 300),
    ("5-10m", 600),
    ("10m+", float("inf")),
)
MONEY_BACK_REASONS = ("expired", "cancelled", "failed", "staff_refund", "other")

Figures = dict[tuple[str, str], list[int]]  # (metric, key) -> [n, total]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def first_code_bucket(seconds: float) -> str:
    for label, upper in FIRST_CODE_BUCKETS:
        if seconds < upper:
            return label
    return FIRST_CODE_BUCKETS[-1][0]


def topup_method(reference: str | None) -> str:
    """The payment source a top-up's reference starts with (``stars:…`` → ``stars``)."""
    source, sep, _ = (reference or "").partition(":")
    return source[:64] if sep and source else "other"


async def compute_day(conn: AsyncConnection, day: date) -> Figures:
    """One day's figures, straight from the day's orders and transfers."""
    start, end = day_bounds(day)
    figures: Figures = defaultdict(lambda: [0, 0])

    def add(metric: str, key: str, n: int, total: int = 0) -> None:
        cell = figures[(metric, key)]
        cell[0] += int(n)
        cell[1] += int(total)

    in_day = and_(orders.c.created_at >= start, orders.c.created_at < end)
    for provider, service, country, status, n in await conn.execute(
        select(orders.c.provider, orders.c.service, orders.c.country, orders.c.status, func.count())
        .where(in_day)
        .group_by(orders.c.provider, orders.c.service, orders.c.country, orders.c.status)
    ):
        add("orders", "", n)
        if status not in FINAL_STATUSES:
            continue
        delivered = n if status in DELIVERED_STATUSES else 0
        if provider:  # an order that never reached a provider says nothing about one
            add("delivery_provider", provider, n, delivered)
        add("delivery_service", service, n, delivered)
        add("delivery_country", country, n, delivered)

    t_in_day = and_(transfers.c.created_at >= start, transfers.c.created_at < end)
    captures = await conn.execute(
        select(transfers.c.amount, transfers.c.created_at, orders.c.created_at)
        .select_from(transfers.outerjoin(orders, orders.c.id == transfers.c.order_id))
        .where(t_in_day, transfers.c.code == "capture")
    )
    for amount, captured_at, ordered_at in captures:
        add("revenue", "", 1, amount)
        if ordered_at is not None:
            seconds = max(0, int((captured_at - ordered_at).total_seconds()))
            add("first_code", first_code_bucket(seconds), 1)
            add("first_code_sum", "", 1, seconds)

    for code, status, n, total in await conn.execute(
        select(transfers.c.code, orders.c.status, func.count(), func.sum(transfers.c.amount))
        .select_from(transfers.outerjoin(orders, orders.c.id == transfers.c.order_id))
        .where(t_in_day, transfers.c.code.in_(("release", "refund")))
        .group_by(transfers.c.code, orders.c.status)
    ):
        if code == "refund":
            reason = "staff_refund"
        else:
            reason = status if status in ("expired", "cancelled", "failed") else "other"
        add("money_back", reason, n, total or 0)

    for reference, amount in await conn.execute(
        select(transfers.c.reference, transfers.c.amount).where(t_in_day, transfers.c.code == "topup")
    ):
        add("topup", topup_method(reference), 1, amount)
    return dict(figures)


async def store_day(conn: AsyncConnection, day: date, figures: Figures, now: datetime) -> None:
    """Replace a day's rows (inside the caller's transaction)."""
    key = day.isoformat()
    await conn.execute(delete(daily_rollups).where(daily_rollups.c.day == key))
    rows = [
        {"day": key, "metric": metric, "key": k, "n": n, "total": total}
        for (metric, k), (n, total) in sorted(figures.items())
    ]
    if rows:
        # Ignore, not fail, if a second scheduler stored the same day in between.
        await conn.execute(insert_ignore(conn, daily_rollups), rows)
    await conn.execute(delete(rollup_days).where(rollup_days.c.day == key))
    await conn.execute(insert_ignore(conn, rollup_days), {"day": key, "computed_at": now})


def window(now: datetime, days: int = WINDOW_DAYS) -> list[date]:
    """The last ``days`` UTC days, oldest first, today included."""
    today = now.astimezone(UTC).date()
    return [today - timedelta(days=i) for i in range(days - 1, -1, -1)]


async def refresh(db: Database, now: datetime, days: int = WINDOW_DAYS) -> int:
    """Recompute every unsettled day of the window; returns how many days were computed.

    The first run computes the whole window; later runs only today (and yesterday until it
    settles), so a run costs one day's slice of the indexes."""
    wanted = window(now, days)
    async with db.read() as conn:
        computed = {
            row.day: row.computed_at
            for row in await conn.execute(
                select(rollup_days.c.day, rollup_days.c.computed_at).where(
                    rollup_days.c.day >= wanted[0].isoformat()
                )
            )
        }
    done = 0
    for day in wanted:
        at = computed.get(day.isoformat())
        if at is not None and at >= day_bounds(day)[1] + SETTLE:
            continue
        async with db.begin() as conn:
            await store_day(conn, day, await compute_day(conn, day), now)
        done += 1
    return done


@dataclass
class Rollups:
    """The window's figures, shaped for charts and their tables."""

    days: list[date]
    per_day: dict[str, dict[date, tuple[int, int]]] = field(default_factory=dict)  # metric → day
    by_key: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)  # metric → key
    computed_at: datetime | None = None

    def series(self, metric: str, use_total: bool = False) -> list[tuple[date, int]]:
        cells = self.per_day.get(metric, {})
        return [(d, cells.get(d, (0, 0))[1 if use_total else 0]) for d in self.days]

    def breakdown(self, metric: str) -> list[tuple[str, int, int]]:
        """``(key, n, total)`` for a metric over the window, largest n first."""
        cells = self.by_key.get(metric, {})
        return sorted(((k, n, t) for k, (n, t) in cells.items()), key=lambda r: (-r[1], r[0]))


async def read(conn: AsyncConnection, now: datetime, days: int = WINDOW_DAYS) -> Rollups:
    wanted = window(now, days)
    result = Rollups(days=wanted)
    first = wanted[0].isoformat()
    per_day: dict[str, dict[date, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    by_key: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    rows: Iterable[tuple[str, str, str, int, int]] = await conn.execute(
        select(
            daily_rollups.c.day,
            daily_rollups.c.metric,
            daily_rollups.c.key,
            daily_rollups.c.n,
            daily_rollups.c.total,
        ).where(daily_rollups.c.day >= first)
    )
    for day_text, metric, key, n, total in rows:
        day = date.fromisoformat(day_text)
        cell = per_day[metric][day]
        cell[0] += int(n)
        cell[1] += int(total)
        kc = by_key[metric][key]
        kc[0] += int(n)
        kc[1] += int(total)
    result.per_day = {m: {d: (c[0], c[1]) for d, c in v.items()} for m, v in per_day.items()}
    result.by_key = {m: {k: (c[0], c[1]) for k, c in v.items()} for m, v in by_key.items()}
    result.computed_at = await conn.scalar(
        select(func.max(rollup_days.c.computed_at)).where(rollup_days.c.day >= first)
    )
    return result
