"""/metrics in the Prometheus exposition format, through ``prometheus-client``.

Every value is read from the database on each scrape (nothing is counted in this process, so
every dashboard replica reports the same numbers and a restart loses nothing): the handler
reads one snapshot, then a custom ``Collector`` turns it into metric families for a registry
of its own. Each value comes from an indexed query or the system accounts, so a scrape stays
cheap on a large database. Needs a staff session or API token (Prometheus sends a bearer
token with ``authorization: {credentials: …}``): the numbers are business data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar import Request, get
from litestar.response import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from admin import queries
from admin.context import breaker_states
from core import tickets

BREAKER_VALUES = {"closed": 0, "half-opened": 1, "half_open": 1, "half-open": 1, "opened": 2, "open": 2}


@dataclass
class Snapshot:
    """What one scrape read: the overview's numbers and the breakers' states."""

    now: datetime
    overview: queries.Overview
    breakers: dict[str, dict[str, Any]]
    tickets_open: int = 0  # "code didn't work" reports waiting for staff


class ShopCollector(Collector):
    """Metric families from one ``Snapshot``; names and labels as the dashboard has always had."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        ov, now = self.snap.overview, self.snap.now

        def gauge(
            name: str,
            help_: str,
            value: float | None = None,
            labels: tuple[str, ...] = (),
            samples: list[tuple[list[str], float]] | None = None,
        ) -> Metric:
            family = GaugeMetricFamily(name, help_, value=value, labels=list(labels) if labels else None)
            for label_values, sample in samples or []:
                family.add_metric(label_values, sample)
            return family

        yield gauge(
            "numbershop_orders_today",
            "Orders created since 00:00 UTC, by status.",
            labels=("status",),
            samples=[([s], ov.orders_today.get(s, 0)) for s in queries.ORDER_STATUSES],
        )
        yield gauge(
            "numbershop_orders_open",
            "Orders holding money now, by status.",
            labels=("status",),
            samples=[([s], ov.open_orders.get(s, 0)) for s in queries.OPEN_STATUSES],
        )
        yield gauge(
            "numbershop_refunds_today_minor", "Staff refunds posted today, minor units.", ov.refunds_today
        )
        yield gauge("numbershop_refunds_today", "Staff refunds posted today, count.", ov.refund_count_today)
        yield gauge(
            "numbershop_released_holds_today",
            "Holds voided today (cancel, expiry, failure).",
            ov.released_count_today,
        )
        yield gauge(
            "numbershop_captured_today_minor", "Revenue captured today, minor units.", ov.captured_today
        )
        yield gauge("numbershop_held_minor", "Money held by open orders now, minor units.", ov.held_now)
        yield gauge("numbershop_wallets_minor", "Sum of all wallet balances, minor units.", ov.wallet_total)
        breakers = sorted(self.snap.breakers.items())
        yield gauge(
            "numbershop_breaker_state",
            "Circuit breaker per provider: 0 closed, 1 half-open, 2 open, -1 unknown.",
            labels=("provider",),
            samples=[([n], BREAKER_VALUES.get(str(b.get("state")).lower(), -1)) for n, b in breakers],
        )
        yield gauge(
            "numbershop_breaker_failures",
            "Consecutive failures counted by each breaker.",
            labels=("provider",),
            samples=[([n], float(b.get("failures") or 0)) for n, b in breakers],
        )
        yield gauge("numbershop_outbox_backlog", "Notifications waiting to be sent.", ov.outbox_backlog)
        oldest = (now - ov.outbox_oldest).total_seconds() if ov.outbox_oldest else 0.0
        yield gauge(
            "numbershop_outbox_oldest_seconds", "Age of the oldest pending notification.", round(oldest, 3)
        )
        yield gauge("numbershop_outbox_failed", "Notifications given up on.", ov.outbox_failed)
        yield gauge(
            "numbershop_job_lag_seconds",
            "Seconds since each scheduler job last finished.",
            labels=("job",),
            samples=[
                ([j["job"]], round(j["lag_seconds"], 3)) for j in ov.jobs if j["lag_seconds"] is not None
            ],
        )
        yield gauge(
            "numbershop_provider_balance_minor",
            "Last upstream balance seen, provider's minor units.",
            labels=("provider", "currency"),
            samples=[([n, b["currency"]], b["amount"]) for n, b in sorted(ov.provider_balances.items())],
        )
        yield gauge(
            "numbershop_tickets_open",
            "Support tickets waiting for staff (the inbox).",
            self.snap.tickets_open,
        )


async def snapshot(ctx: Any) -> Snapshot:
    now = ctx.clock.now()
    async with ctx.db.read() as conn:
        ov = await queries.overview(conn, now)
    return Snapshot(
        now=now,
        overview=ov,
        breakers=await breaker_states(ctx.board),
        tickets_open=await tickets.count_open(ctx.db),
    )


def exposition(snap: Snapshot) -> bytes:
    """The text a scrape gets: a registry of its own, so nothing leaks between scrapes."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShopCollector(snap))
    return generate_latest(registry)


@get("/metrics", opt={"role": "viewer"}, include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = exposition(await snapshot(request.app.state.admin))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
