"""Reconciliation: compare the books, the orders and every provider, and repair what drifted.

The jobs keep orders, holds and upstream activations in step as things happen; this is the
independent second look that catches whatever slipped past them (a bug, a crash in the wrong
place, a provider that changed state behind our back, a hand-edited row). It checks:

* every ledger invariant (DESIGN §2), which includes orders against their holds;
* open orders against their deadlines (a waiting order past it, a reservation stuck);
* each provider's active activations against our orders: an activation no order owns is an
  orphan the shop pays for (cancelled); an open order the provider already closed is closed
  here *through the order's transition*, so the code is captured or the hold voided exactly as
  if the poller had seen it; a cost that differs from what we recorded is flagged for staff;
* each provider's account balance, stored as a snapshot for the dashboard.

Every repair goes through the same guarded services the jobs use (compare-and-set
transitions, idempotent ledger resolutions, a provider cancel that tolerates "already
closed"), so running the repairs twice, or in two processes at once, repairs once.

A dry run plans the same repairs and writes nothing at all — not even its own run record — so
it is safe on a production database. A recorded run stores what it checked, every finding
and every fix in ``reconciliation_runs``, and queues one staff alert when anything was found.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from core import ledger, outbox
from core.clock import Clock
from core.config import Settings
from core.db.chunks import chunks
from core.db.engine import Database
from core.db.tables import orders, provider_balances, reconciliation_runs
from core.invariants import INVARIANT_COUNT, check_invariants
from core.order_states import OPEN, UPSTREAM_CLOSED, OrderStatus, UpstreamState
from core.orders import OrderService
from core.orders.view import known_messages
from core.providers.base import ActivationState, Provider, Rental
from core.providers.errors import ActivationNotFound, AlreadyClosed, ProviderError
from core.reconcile_report import Finding, Fix, ReconcileReport, alert_text, jsonable

log = logging.getLogger(__name__)

DEFAULT_DAYS = 30
DEFAULT_GRACE_S = 120  # how late a job may be before its lateness is a finding
ORPHAN_MIN_AGE_S = 60  # an activation younger than this may still be joining its order

Progress = Callable[[str, int, int], None]


class Reconciler:
    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        settings: Settings,
        providers: Mapping[str, Provider],
        orders: OrderService,
        actor: str = "system:reconcile",
        grace_seconds: float = DEFAULT_GRACE_S,
    ) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.providers = providers
        self.orders = orders
        self.actor = actor
        self.grace = timedelta(seconds=grace_seconds)

    @classmethod
    def from_core(cls, core: Any, **kw: Any) -> Reconciler:
        return cls(
            db=core.db,
            clock=core.clock,
            settings=core.settings,
            providers=core.providers,
            orders=core.orders,
            **kw,
        )

    async def run(
        self,
        *,
        days: int = DEFAULT_DAYS,
        execute: bool = False,
        mode: str | None = None,
        record: bool | None = None,
        progress: Progress | None = None,
    ) -> ReconcileReport:
        """Check everything; with ``execute``, repair what can be repaired safely.

        ``record`` (default: ``execute``) stores the run and alerts staff; a dry run that
        is not recorded changes nothing anywhere."""
        if days < 0:
            raise ValueError("days cannot be negative")
        mode = mode or ("execute" if execute else "dry_run")
        record = execute if record is None else record
        now = self.clock.now()
        since = now - timedelta(days=days)
        steps = ["ledger", "orders", *(f"provider {n}" for n in self.providers), "balances"]
        if execute:
            steps.append("fixes")
        total = len(steps)
        report = ReconcileReport(
            None, mode, now, None, {"days": days, "since": since.isoformat()}, [], "running"
        )
        if record:
            report.run_id = await self._start_run(mode, now)

        def step(done: int) -> None:
            if progress is not None:
                progress(steps[min(done, total - 1)], done, total)

        try:
            step(0)
            settled: set[str] = set()  # orders some finding already repairs
            await self._ledger(report, now, settled)
            step(1)
            await self._orders(report, now, since, settled)
            step(2)
            for i, (name, provider) in enumerate(self.providers.items()):
                await self._upstream(report, name, provider, now, since, settled)
                step(3 + i)
            balances = await self._balances(report, now, store=record)
            step(3 + len(self.providers))
            if execute:
                await self._repair(report)
                step(total)
        except BaseException as exc:
            report.status = "error"
            report.findings.append(Finding("reconcile_error", f"{type(exc).__name__}: {exc}"))
            report.finished_at = self.clock.now()
            if record and report.run_id is not None:
                await self._finish_run(report)
            raise
        report.finished_at = self.clock.now()
        report.status = "clean" if not report.findings else "fixed" if not report.remaining else "findings"
        report.checked["balances"] = balances
        if record:
            await self._finish_run(report)
        return report

    # ----------------------------------------------------------------- checks
    async def _ledger(self, report: ReconcileReport, now: datetime, settled: set[str]) -> None:
        violations = await check_invariants(self.db, now, int(self.grace.total_seconds()))
        report.checked["invariants"] = INVARIANT_COUNT
        report.checked["violations"] = len(violations)
        holds = [v.ref for v in violations if v.code == "hold_overdue" and v.ref]
        by_hold: dict[str, Any] = {}
        async with self.db.scan() as conn:
            for chunk in chunks(holds):
                for row in await conn.execute(
                    select(orders.c.id, orders.c.status, orders.c.hold_transfer_id).where(
                        orders.c.hold_transfer_id.in_(chunk)
                    )
                ):
                    by_hold[row.hold_transfer_id] = row
        for v in violations:
            finding = Finding(v.code, v.message, v.ref, invariant=v.invariant)
            order_id: str | None = None
            if v.code == "hold_overdue" and v.ref in by_hold:
                row = by_hold[v.ref]
                order_id = row.id
                finding.ref = row.id
                finding.message += f" (order {row.id}, {row.status})"
                if row.status in (OrderStatus.WAITING, OrderStatus.RESERVING):
                    finding.fix = (
                        "expire the order (after a final check for a code)"
                        if row.status == OrderStatus.WAITING
                        else "fail the order"
                    )
                    finding.repair = self._settle_overdue(row.id)
                else:
                    finding.fix = "settle the hold as the closed order requires"
                    finding.repair = self._settle_hold(row.id)
            elif (
                v.code in ("order_closed_hold_not_voided", "order_completed_hold_not_posted")
                and v.ref
                and "hold is pending" in v.message
            ):
                order_id = v.ref
                finding.fix = (
                    "void the hold (the user is owed the money)"
                    if v.code == "order_closed_hold_not_voided"
                    else "capture the hold (the user had the code)"
                )
                finding.repair = self._settle_hold(v.ref)
            if order_id is not None:
                if order_id in settled:
                    finding.repair = self._already_settled(order_id)
                settled.add(order_id)
            report.findings.append(finding)

    async def _orders(
        self,
        report: ReconcileReport,
        now: datetime,
        since: datetime,
        settled: set[str],
    ) -> None:
        stuck_after = timedelta(
            seconds=max(2 * self.settings.RECOVERY_AFTER_SECONDS, self.grace.total_seconds())
        )
        # A whole window of orders: read off the loop (``scan``), counted by the database.
        async with self.db.scan() as conn:
            report.checked["orders_in_window"] = int(
                await conn.scalar(
                    select(func.count()).select_from(orders).where(orders.c.created_at >= since)
                )
                or 0
            )
            overdue = (
                await conn.execute(
                    select(orders.c.id, orders.c.expires_at).where(
                        orders.c.created_at >= since,
                        orders.c.status == OrderStatus.WAITING,
                        orders.c.expires_at < now - self.grace,
                    )
                )
            ).all()
            # A completed order's number stays open (more codes) until Done or its deadline:
            # open before the deadline is normal, not an orphan; open well after it means the
            # finishing job fell behind.
            open_late = (
                await conn.execute(
                    select(orders.c.id, orders.c.expires_at).where(
                        orders.c.created_at >= since,
                        orders.c.status.in_((OrderStatus.COMPLETED, OrderStatus.REFUNDED)),
                        orders.c.upstream_state == UpstreamState.ACTIVE,
                        orders.c.expires_at < now - self.grace,
                    )
                )
            ).all()
            stuck = (
                await conn.execute(
                    select(orders.c.id, orders.c.updated_at).where(
                        orders.c.created_at >= since,
                        orders.c.status == OrderStatus.RESERVING,
                        orders.c.updated_at < now - stuck_after,
                    )
                )
            ).all()
        for order_id, expires_at in overdue:
            if order_id in settled:
                continue
            settled.add(order_id)
            report.findings.append(
                Finding(
                    "order_overdue",
                    f"order {order_id} is still waiting past its deadline {expires_at.isoformat()}",
                    order_id,
                    fix="expire the order (after a final check for a code)",
                    repair=self._settle_overdue(order_id),
                )
            )
        for order_id, expires_at in open_late:
            report.findings.append(
                Finding(
                    "open_number_overdue",
                    f"order {order_id} is completed but its number is still open upstream past "
                    f"its deadline {expires_at.isoformat()}",
                    order_id,
                    fix="finish it upstream",
                    repair=self._finish_open(),
                )
            )
        for order_id, updated_at in stuck:
            if order_id in settled:
                continue
            settled.add(order_id)
            report.findings.append(
                Finding(
                    "order_stuck_reserving",
                    f"order {order_id} has been reserving since {updated_at.isoformat()}",
                    order_id,
                    fix="recover it (ask the provider again, or fail it and void the hold)",
                    repair=self._recover(order_id),
                )
            )

    async def _upstream(
        self,
        report: ReconcileReport,
        name: str,
        provider: Provider,
        now: datetime,
        since: datetime,
        settled: set[str],
    ) -> None:
        checked: dict[str, Any] = {}
        report.checked.setdefault("providers", {})[name] = checked
        try:
            active = await provider.active_activations()
        except ProviderError as exc:
            report.findings.append(
                Finding("provider_unreachable", f"{name}: listing active activations failed: {exc}", name)
            )
            return
        checked["active"] = len(active)
        listed = {r.activation_id: r for r in active}
        owners: dict[str, Any] = {}
        async with self.db.scan() as conn:
            for chunk in chunks(list(listed)):
                for found in await conn.execute(
                    select(
                        orders.c.id,
                        orders.c.activation_id,
                        orders.c.status,
                        orders.c.upstream_state,
                        orders.c.cost,
                    ).where(orders.c.provider == name, orders.c.activation_id.in_(chunk))
                ):
                    owners[found.activation_id] = found
            reserving = (
                await conn.execute(
                    select(orders.c.service, orders.c.country).where(
                        orders.c.provider == name, orders.c.status == OrderStatus.RESERVING
                    )
                )
            ).all()
            open_orders = (
                await conn.execute(
                    select(orders.c.id, orders.c.activation_id, orders.c.status).where(
                        orders.c.provider == name,
                        orders.c.status == OrderStatus.WAITING,
                        orders.c.activation_id.is_not(None),
                        orders.c.created_at >= since,
                        orders.c.created_at <= now - timedelta(seconds=self.settings.RECOVERY_AFTER_SECONDS),
                    )
                )
            ).all()
        checked["open_orders"] = len(open_orders)
        pending = {(s, c) for s, c in reserving}
        orphans = 0
        for aid, rental in listed.items():
            row = owners.get(aid)
            if row is None:
                if self._may_be_joining(rental, pending, now):
                    continue
                orphans += 1
                report.findings.append(
                    Finding(
                        "upstream_orphan",
                        f"{name}: activation {aid} ({rental.service}/"
                        f"{rental.country}, {rental.phone}) is active but no order owns it",
                        aid,
                        fix="cancel it upstream",
                        repair=self._cancel_upstream(provider, aid, False),
                    )
                )
            elif self._closed_here(row):
                # The listing came before our read of the order, so the order may have closed
                # it upstream in between: ask once more before calling it a leak.
                if not await self._still_open(provider, aid):
                    continue
                finish = row.status in (OrderStatus.COMPLETED, OrderStatus.REFUNDED)
                report.findings.append(
                    Finding(
                        "closed_order_active_upstream",
                        f"{name}: activation {aid} is still active "
                        f"but its order {row.id} is {row.status} (upstream {row.upstream_state})",
                        row.id,
                        fix="finish it upstream" if finish else "cancel it upstream",
                        repair=self._cancel_upstream(provider, aid, finish),
                    )
                )
            if row is not None and row.cost is not None and rental.cost != row.cost:
                report.findings.append(
                    Finding(
                        "cost_mismatch",
                        f"{name}: activation {aid} of order {row.id} costs "
                        f"{rental.cost} upstream but {row.cost} in our books",
                        row.id,
                    )
                )
        checked["orphans"] = orphans
        unlisted = [r for r in open_orders if r.activation_id not in listed and r.id not in settled]
        checked["unlisted_checked"] = len(unlisted)
        if unlisted:
            async with self.db.scan() as conn:
                known = await known_messages(conn, [r.id for r in unlisted])
        for row in unlisted:
            try:
                status = await provider.status(row.activation_id)
            except ActivationNotFound:
                report.findings.append(
                    Finding(
                        "order_unknown_upstream",
                        f"{name}: order {row.id} is waiting but the "
                        f"provider does not know activation {row.activation_id}",
                        row.id,
                    )
                )
                continue
            except ProviderError as exc:
                report.findings.append(
                    Finding(
                        "upstream_status_failed",
                        f"{name}: status of order {row.id} (activation {row.activation_id}) failed: {exc}",
                        row.id,
                    )
                )
                continue
            fresh = [m for m in status.messages if m.code and (row.id, m.message_id) not in known]
            if status.state in (ActivationState.CANCELLED, ActivationState.EXPIRED) and not fresh:
                settled.add(row.id)
                report.findings.append(
                    Finding(
                        "order_closed_upstream",
                        f"{name}: order {row.id} is waiting but the provider "
                        f"closed activation {row.activation_id} ({status.state}) without a code",
                        row.id,
                        fix="fail the order and void its hold",
                        repair=self._apply_status(row.id, status),
                    )
                )
            elif fresh:
                settled.add(row.id)
                report.findings.append(
                    Finding(
                        "order_code_not_recorded",
                        f"{name}: order {row.id} is waiting but activation "
                        f"{row.activation_id} has a code ({status.state})",
                        row.id,
                        fix="record the code and complete the order",
                        repair=self._apply_status(row.id, status),
                    )
                )
            elif status.state == ActivationState.FINISHED:
                report.findings.append(
                    Finding(
                        "order_closed_upstream",
                        f"{name}: order {row.id} is waiting but the provider "
                        f"finished activation {row.activation_id} without a code we know of",
                        row.id,
                    )
                )

    @staticmethod
    def _closed_here(row: Any) -> bool:
        """Our books say this activation was closed upstream (not merely pending a retry)."""
        if row.status in OPEN:
            return False
        if row.status == OrderStatus.COMPLETED:
            return row.upstream_state in UPSTREAM_CLOSED
        return row.upstream_state in UPSTREAM_CLOSED | {UpstreamState.NONE}

    @staticmethod
    async def _still_open(provider: Provider, activation_id: str) -> bool:
        try:
            status = await provider.status(activation_id)
        except ActivationNotFound:
            return False
        except ProviderError:
            return True  # cannot tell: report it; a repair tolerates "already closed"
        return status.state in (ActivationState.WAITING, ActivationState.CODE)

    def _may_be_joining(self, rental: Rental, reserving: set[tuple[str, str]], now: datetime) -> bool:
        """A rental whose order may still be committing phase 3 or awaiting recovery."""
        if rental.created_at is not None and rental.created_at > now - timedelta(seconds=ORPHAN_MIN_AGE_S):
            return True
        if rental.service is None or rental.country is None:
            return bool(reserving)
        return (rental.service, rental.country) in reserving

    async def _balances(self, report: ReconcileReport, now: datetime, *, store: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, provider in self.providers.items():
            try:
                balance = await provider.balance()
            except ProviderError as exc:
                report.findings.append(
                    Finding("provider_balance_failed", f"{name}: reading the balance failed: {exc}", name)
                )
                continue
            out[name] = {"amount": balance.amount, "currency": balance.currency}
            if store:
                async with self.db.begin() as conn:
                    await conn.execute(
                        provider_balances.insert().values(
                            provider=name, amount=balance.amount, currency=balance.currency, taken_at=now
                        )
                    )
        return out

    # ---------------------------------------------------------------- repairs
    def _settle_overdue(self, order_id: str) -> Fix:
        async def fix() -> bool:
            after = await self.orders.settle_overdue(order_id, actor=self.actor)
            return not after.is_open

        return fix

    def _finish_open(self) -> Fix:
        async def fix() -> bool:  # the finishing job's own pass: guarded, so running it twice finishes once
            await self.orders.finish_due(owner=f"reconcile:{self.actor}"[:64])
            return True

        return fix

    def _settle_hold(self, order_id: str) -> Fix:
        async def fix() -> bool:
            await self.orders.settle_closed_order_hold(order_id, actor=self.actor)
            return await self._hold_settled(order_id)

        return fix

    def _already_settled(self, order_id: str) -> Fix:
        async def fix() -> bool:  # another finding's repair covers this order; confirm it took
            order = await self.orders.get_order(order_id)
            return not order.is_open and await self._hold_settled(order_id)

        return fix

    async def _hold_settled(self, order_id: str) -> bool:
        async with self.db.read() as conn:
            hold = await conn.scalar(select(orders.c.hold_transfer_id).where(orders.c.id == order_id))
            return hold is not None and await ledger.hold_resolution(conn, hold) is not None

    def _recover(self, order_id: str) -> Fix:
        async def fix() -> bool:
            return (await self.orders.recover_order(order_id)).status != OrderStatus.RESERVING

        return fix

    def _apply_status(self, order_id: str, status: Any) -> Fix:
        async def fix() -> bool:
            after = await self.orders.apply_upstream_status(order_id, status, actor=self.actor)
            return after.status != OrderStatus.WAITING

        return fix

    def _cancel_upstream(self, provider: Provider, activation_id: str, finish: bool) -> Fix:
        async def fix() -> bool:
            try:
                if finish:
                    await provider.finish(activation_id)
                else:
                    await provider.cancel(activation_id)
            except AlreadyClosed:
                pass  # closed since we looked (or by a concurrent run): nothing left to pay for
            return True

        return fix

    async def _repair(self, report: ReconcileReport) -> None:
        for finding in report.findings:
            if finding.repair is None:
                continue
            try:
                finding.fixed = bool(await finding.repair())
                if not finding.fixed:
                    finding.error = "the repair did not take; it will be tried again"
            except Exception as exc:
                log.warning("reconcile: fixing %s %s failed: %s", finding.code, finding.ref, exc)
                finding.error = f"{type(exc).__name__}: {exc}"[:500]

    # ------------------------------------------------------------ run record
    async def _start_run(self, mode: str, now: datetime) -> int:
        async with self.db.begin() as conn:
            result = await conn.execute(
                reconciliation_runs.insert()
                .values(mode=mode, started_at=now, status="running")
                .returning(reconciliation_runs.c.id)
            )
            return int(result.scalar_one())

    async def _finish_run(self, report: ReconcileReport) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                update(reconciliation_runs)
                .where(reconciliation_runs.c.id == report.run_id)
                .values(
                    finished_at=report.finished_at,
                    status=report.status,
                    checked=jsonable(report.checked),
                    findings=[f.as_dict() for f in report.findings],
                    fixes=[f.as_dict() for f in report.fixes],
                )
            )
            chat = self.settings.STAFF_CHAT_ID
            if report.findings and chat is not None:
                await outbox.enqueue(
                    conn,
                    kind="staff_alert",
                    chat_id=chat,
                    payload={"text": alert_text(report), "run_id": report.run_id},
                    now=report.finished_at or self.clock.now(),
                    dedupe_key=f"reconcile:{report.run_id}",
                )
            elif report.findings:
                log.warning(
                    "reconciliation run %s: %d finding(s); STAFF_CHAT_ID is not set",
                    report.run_id,
                    len(report.findings),
                )


async def run_reconciliation(
    core: Any, *, execute: bool = False, days: int = DEFAULT_DAYS, actor: str | None = None
) -> ReconcileReport:
    """The entry point for the dashboard's "run now": always recorded (dry runs too, as
    ``dry_run``), so the result shows in the list of runs."""
    reconciler = Reconciler.from_core(core, **({"actor": actor} if actor else {}))
    return await reconciler.run(days=days, execute=execute, record=True)
