"""The shop's scheduled jobs: a handful of fixed-interval tickers, each one call into core.

Work state lives in the domain tables (``next_poll_at``, leases, upstream retry times), not in
the scheduler, so a ticker is only "look for due work now": a restart loses nothing, and two
scheduler processes running the same ticker split the due work through core's leases. Each
run records a heartbeat in ``job_runs`` for the dashboard's job lag.

Tests call these methods directly instead of waiting for timers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from core import (
    broadcasts,
    catalogue,
    delivery_stats,
    idempotency,
    jobs,
    provider_balances,
    retention,
    rollups,
)
from core.clock import Clock
from core.config import Settings
from core.db.engine import Database
from core.orders import OrderService
from core.providers.base import Provider
from core.providers.errors import ProviderError
from core.reconcile import DEFAULT_DAYS, Reconciler
from core.reconcile_report import ReconcileReport

log = logging.getLogger(__name__)

T = TypeVar("T")

EXPIRE_EVERY_S = 5.0
RETRY_UPSTREAM_EVERY_S = 15.0
SAFETY_NET_EVERY_S = 60.0
SYNC_CATALOGUE_EVERY_S = 600.0
REAP_KEYS_EVERY_S = 3600.0
# Retention: a few times a day, so a run stays small and a restart never skips a day.
RETENTION_EVERY_S = 6 * 3600.0
# Upstream balances: often enough that a low balance is noticed before rents start failing.
BALANCES_EVERY_S = 300.0
# Crypto Pay invoices: the fallback for lost webhooks (one getInvoices call per 100 invoices).
CRYPTOPAY_EVERY_S = 30.0
# Order timers: redraws are due on whole minutes before each deadline; a few seconds late is fine.
REDRAW_EVERY_S = 5.0
# Delivery statistics: rates that move over hours lose nothing by being half a minute late.
DELIVERY_STATS_EVERY_S = 30.0
# The overview's daily rollups: today's partial day is at most a minute old.
ROLLUPS_EVERY_S = 60.0
# Broadcasts: each run queues the next few seconds' worth of messages.
BROADCASTS_EVERY_S = 5.0


class CoreLike(Protocol):
    """What the jobs need of ``core.app.Core`` (tests pass a lighter object)."""

    db: Database
    clock: Clock
    settings: Settings
    providers: Mapping[str, Provider]
    orders: OrderService


@dataclass(frozen=True, slots=True)
class Ticker:
    name: str
    interval_s: float
    run: Callable[[], Awaitable[Any]]


def poll_tick(interval_s: float) -> float:
    """How often the poll ticker looks for due orders: a fraction of the poll interval, so an
    order is polled close to its due time rather than up to a whole tick late."""
    return min(1.0, max(0.25, interval_s / 6))


def recover_every(recovery_after_s: float) -> float:
    return min(60.0, max(5.0, recovery_after_s / 4))


class ShopJobs:
    def __init__(
        self, core: CoreLike, *, owner: str | None = None, reconcile_days: int = DEFAULT_DAYS
    ) -> None:
        self.core = core
        self.owner = owner or jobs.new_owner("sched:")
        self.reconcile_days = reconcile_days
        self.reconciler = Reconciler.from_core(core, actor="scheduler:reconcile")

    def tickers(self) -> list[Ticker]:
        s = self.core.settings
        return [
            Ticker("poll", poll_tick(s.SMS_POLL_INTERVAL_SECONDS), self.poll),
            Ticker("expire", EXPIRE_EVERY_S, self.expire),
            Ticker("recover", recover_every(s.RECOVERY_AFTER_SECONDS), self.recover),
            Ticker("retry_upstream", RETRY_UPSTREAM_EVERY_S, self.retry_upstream),
            Ticker("resolve_overdue_holds", SAFETY_NET_EVERY_S, self.resolve_overdue_holds),
            Ticker("reconcile", float(s.RECONCILE_INTERVAL_SECONDS), self.reconcile),
            Ticker("sync_catalogue", SYNC_CATALOGUE_EVERY_S, self.sync_catalogue),
            Ticker("reap_keys", REAP_KEYS_EVERY_S, self.reap_keys),
            Ticker("retention", RETENTION_EVERY_S, self.apply_retention),
            Ticker("provider_balances", BALANCES_EVERY_S, self.check_balances),
            *([Ticker("cryptopay", CRYPTOPAY_EVERY_S, self.poll_crypto)] if self._cryptopay() else []),
            Ticker("finish_open", EXPIRE_EVERY_S, self.finish_open),
            Ticker("redraw", REDRAW_EVERY_S, self.redraw),
            Ticker("delivery_stats", DELIVERY_STATS_EVERY_S, self.fold_delivery_stats),
            Ticker("rollups", ROLLUPS_EVERY_S, self.refresh_rollups),
            Ticker("broadcasts", BROADCASTS_EVERY_S, self.queue_broadcasts),
        ]

    async def _run(self, name: str, work: Callable[[], Awaitable[T]]) -> T:
        return await jobs.run_job(self.core.db, self.core.clock, name, self.owner, work)

    async def poll(self) -> int:
        tick = poll_tick(self.core.settings.SMS_POLL_INTERVAL_SECONDS)
        return await self._run("poll", lambda: self.core.orders.poll_due(owner=self.owner, tick_seconds=tick))

    async def expire(self) -> int:
        return await self._run("expire", lambda: self.core.orders.expire_due(owner=self.owner))

    async def finish_open(self) -> int:
        return await self._run("finish_open", lambda: self.core.orders.finish_due(owner=self.owner))

    async def redraw(self) -> int:
        return await self._run("redraw", lambda: self.core.orders.redraw_due())

    async def recover(self) -> int:
        return await self._run("recover", lambda: self.core.orders.recover_reserving(owner=self.owner))

    async def retry_upstream(self) -> int:
        return await self._run("retry_upstream", lambda: self.core.orders.retry_upstream(owner=self.owner))

    async def resolve_overdue_holds(self) -> int:
        return await self._run(
            "resolve_overdue_holds", lambda: self.core.orders.resolve_overdue_holds(owner=self.owner)
        )

    async def reconcile(self) -> ReconcileReport:
        return await self._run(
            "reconcile",
            lambda: self.reconciler.run(
                days=self.reconcile_days, execute=True, mode="scheduled", record=True
            ),
        )

    async def sync_catalogue(self) -> dict[str, int]:
        async def work() -> dict[str, int]:
            stored: dict[str, int] = {}
            failed: list[str] = []
            for name, provider in self.core.providers.items():
                try:
                    stored[name] = (
                        await catalogue.sync_catalogue(self.core.db, provider, self.core.clock)
                    ).stored
                except ProviderError as exc:
                    log.warning("catalogue of %s not synced: %s", name, exc)
                    failed.append(f"{name}: {exc}")
            await catalogue.prune_catalogue(
                self.core.db, list(self.core.providers), actor="scheduler", now=self.core.clock.now()
            )
            if failed:
                raise RuntimeError("catalogue sync failed for " + "; ".join(failed))
            return stored

        return await self._run("sync_catalogue", work)

    async def reap_keys(self) -> int:
        return await self._run("reap_keys", lambda: idempotency.reap(self.core.db, self.core.clock.now()))

    async def apply_retention(self) -> retention.RetentionReport:
        policy = retention.RetentionPolicy.from_settings(self.core.settings)
        report: retention.RetentionReport = await self._run(
            "retention", lambda: retention.prune(self.core.db, self.core.clock, policy)
        )
        return report

    async def check_balances(self) -> list[provider_balances.BalanceCheck]:
        checks: list[provider_balances.BalanceCheck] = await self._run(
            "provider_balances",
            lambda: provider_balances.check_from_settings(
                self.core.db, self.core.clock, self.core.providers, self.core.settings
            ),
        )
        return checks

    def _cryptopay(self) -> Any:
        return getattr(self.core, "cryptopay", None)  # tests' lighter cores have none

    async def poll_crypto(self) -> Any:
        """Crypto Pay invoices: credit paid ones whose webhook was lost, mark expired ones."""
        service = self._cryptopay()
        if service is None:
            return None
        return await self._run("cryptopay", service.poll)

    async def fold_delivery_stats(self) -> int:
        return await self._run(
            "delivery_stats",
            lambda: delivery_stats.fold_closed_orders(self.core.db, self.core.clock, self.core.settings),
        )

    async def refresh_rollups(self) -> int:
        return await self._run("rollups", lambda: rollups.refresh(self.core.db, self.core.clock.now()))

    async def queue_broadcasts(self) -> int:
        return await self._run(
            "broadcasts",
            lambda: broadcasts.enqueue_due(
                self.core.db, self.core.clock.now(), interval_s=BROADCASTS_EVERY_S
            ),
        )

    async def run_all_once(self) -> dict[str, Any]:
        """Every job once, in ticker order (``numbershop scheduler run --once``)."""
        results: dict[str, Any] = {}
        for ticker in self.tickers():
            try:
                results[ticker.name] = await ticker.run()
            except Exception as exc:
                results[ticker.name] = f"error: {type(exc).__name__}: {exc}"
        return results
