"""Reconciliation against a real database and scripted providers: each kind of drift is
found, a dry run changes nothing at all, an executing run fixes it through the order's own
transition, and a second run finds nothing left to fix."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine

from core.db.tables import audit_log, order_events, orders, provider_balances, reconciliation_runs
from core.db.tables import outbox as outbox_t
from core.providers.base import ActivationState, RentRequest
from core.providers.errors import ProviderUnavailable
from core.reconcile import Reconciler
from tests.integration.orders_support import AppliedButUnknown, Shop
from tests.integration.scheduler_support import FlakyProvider, buy, core_of, count, dump

STAFF_CHAT = -100123


@pytest.fixture
async def shop(db, clock):
    s = Shop(db, clock, {"alpha": FlakyProvider("alpha", clock)}, STAFF_CHAT_ID=STAFF_CHAT)
    await s.setup_catalogue()
    yield s


def reconciler(shop):
    return Reconciler.from_core(core_of(shop))


async def run(shop, execute=False, **kw):
    return await reconciler(shop).run(execute=execute, **kw)


def codes(report):
    return sorted(f.code for f in report.findings)


async def orphan(shop, clock, *, age=120, service="whatsapp", country="GB"):
    """An activation rented upstream that no order owns (e.g. a crash before phase 3)."""
    clock.advance(-age)
    rental = await shop.providers["alpha"].rent(RentRequest(service, country, 100, "lost-key"))
    clock.advance(age)
    return rental.activation_id


async def status_of(shop, order_id):
    return (await shop.orders.get_order(order_id)).status


# ------------------------------------------------------------------------ clean


async def test_a_clean_shop_is_clean_and_a_dry_run_records_nothing(shop, clock):
    user = await shop.user(1, funds=500)
    await buy(shop, user, "k1")
    clock.advance(200)
    report = await run(shop)
    assert report.status == "clean" and report.findings == [] and report.run_id is None
    assert report.checked["providers"]["alpha"] == {
        "active": 1,
        "open_orders": 1,
        "orphans": 0,
        "unlisted_checked": 0,
    }
    assert await count(shop.db, reconciliation_runs) == 0
    executed = await run(shop, execute=True)
    assert executed.status == "clean" and executed.run_id is not None
    assert await count(shop.db, outbox_t, outbox_t.c.kind == "staff_alert") == 0


async def test_order_checks_count_in_sql_and_read_through_the_scan(shop, clock, monkeypatch):
    """The order checks must neither pull every order id of the window into Python to count
    them nor run their queries on the shop's inline connections: they go through
    ``Database.scan`` (aiosqlite's thread on SQLite, a read-only snapshot on PostgreSQL)."""
    user = await shop.user(1, funds=1000)
    for i in range(3):
        await buy(shop, user, f"k{i}")
    clock.advance(200)
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()))

    scans = 0
    real_scan = shop.db.scan

    @asynccontextmanager
    async def counting_scan():
        nonlocal scans
        scans += 1
        async with real_scan() as conn:
            yield conn

    monkeypatch.setattr(shop.db, "scan", counting_scan)
    event.listen(Engine, "before_cursor_execute", seen)
    try:
        report = await run(shop)
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert report.checked["orders_in_window"] == 3
    id_lists = [
        s for s in statements if s.startswith("SELECT orders.id FROM orders WHERE orders.created_at >=")
    ]
    assert id_lists == []
    assert any("count(" in s.lower() and "FROM orders" in s for s in statements)
    assert scans >= 2  # the ledger's invariants, and the order checks


# ------------------------------------------------------------ the four repairs


async def test_unresolved_hold_past_its_timeout_is_settled_through_the_order(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    clock.advance(shop.settings.ORDER_MAX_TTL_SECONDS + shop.settings.HOLD_GRACE_SECONDS + 200)
    dry = await run(shop)
    assert codes(dry) == ["hold_overdue"]  # the overdue order itself is not reported twice
    [finding] = dry.findings
    assert finding.ref == o.id and "expire" in finding.fix and not finding.fixed
    assert await status_of(shop, o.id) == "waiting"

    fixed = await run(shop, execute=True)
    assert fixed.status == "fixed" and fixed.findings[0].fixed
    assert await status_of(shop, o.id) == "expired"
    assert (await shop.wallet(user)).available == 500
    assert await count(shop.db, outbox_t, outbox_t.c.kind == "expired") == 1
    again = await run(shop, execute=True)
    assert again.status == "clean"
    await shop.assert_books_clean()


async def test_order_whose_hold_was_never_voided_gets_its_money_back(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    async with shop.db.begin() as conn:  # a bug closed the order without releasing the hold
        await conn.execute(
            update(orders)
            .where(orders.c.id == o.id)
            .values(status="cancelled", upstream_state="cancelled", next_poll_at=None)
        )
    shop.providers["alpha"].close(o.activation_id, ActivationState.CANCELLED)
    dry = await run(shop)
    assert codes(dry) == ["order_closed_hold_not_voided"]
    assert dry.findings[0].invariant == 5 and "void" in dry.findings[0].fix
    assert (await shop.wallet(user)).available == 400

    fixed = await run(shop, execute=True)
    assert fixed.status == "fixed"
    wallet = await shop.wallet(user)
    assert (wallet.balance, wallet.held, wallet.available) == (500, 0, 500)
    assert await count(shop.db, outbox_t, outbox_t.c.kind == "cancelled", outbox_t.c.order_id == o.id) == 1
    assert await count(shop.db, audit_log, audit_log.c.action == "order.hold_voided") == 1
    assert (await run(shop, execute=True)).status == "clean"
    assert await count(shop.db, audit_log, audit_log.c.action == "order.hold_voided") == 1
    await shop.assert_books_clean()


async def test_upstream_orphan_is_cancelled_once(shop, clock):
    aid = await orphan(shop, clock)
    alpha = shop.providers["alpha"]
    dry = await run(shop)
    assert codes(dry) == ["upstream_orphan"] and dry.findings[0].ref == aid
    assert alpha.calls_of("cancel") == 0

    fixed = await run(shop, execute=True)
    assert fixed.status == "fixed"
    assert alpha.activations[aid].state == ActivationState.CANCELLED
    assert alpha.calls_of("cancel", aid) == 1
    assert (await run(shop, execute=True)).status == "clean"
    assert alpha.calls_of("cancel", aid) == 1


async def test_young_orphans_and_ones_a_reservation_may_claim_are_left_alone(shop, clock):
    await orphan(shop, clock, age=10)
    assert (await run(shop)).findings == []
    clock.advance(100)
    user = await shop.user(1, funds=500)
    shop.providers["alpha"].rent_script = [AppliedButUnknown("lost")]
    o = await buy(shop, user, "k1")
    assert o.status == "reserving"
    # Two unowned activations now, but a reserving order may still claim either: recovery first.
    assert codes(await run(shop)) == []
    clock.advance(shop.settings.RECOVERY_AFTER_SECONDS + 1)
    await shop.orders.recover_reserving()
    assert await status_of(shop, o.id) == "waiting"
    assert codes(await run(shop)) == ["upstream_orphan"]  # the one recovery did not take


async def test_order_closed_upstream_is_failed_and_refunded(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    shop.providers["alpha"].close(o.activation_id, ActivationState.EXPIRED)
    clock.advance(shop.settings.RECOVERY_AFTER_SECONDS + 1)
    dry = await run(shop)
    assert codes(dry) == ["order_closed_upstream"]
    assert await status_of(shop, o.id) == "waiting"

    fixed = await run(shop, execute=True)
    assert fixed.status == "fixed"
    final = await shop.orders.get_order(o.id)
    assert final.status == "failed" and final.upstream_state == "cancelled"
    assert (await shop.wallet(user)).available == 500
    async with shop.db.read() as conn:
        actor = await conn.scalar(
            select(order_events.c.actor).where(
                order_events.c.order_id == o.id, order_events.c.to_status == "failed"
            )
        )
    assert actor == "system:reconcile"
    assert await count(shop.db, outbox_t, outbox_t.c.kind == "failed") == 1
    assert (await run(shop, execute=True)).status == "clean"
    await shop.assert_books_clean()


async def test_a_code_the_poller_missed_is_recorded_not_refunded(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    alpha = shop.providers["alpha"]
    alpha.deliver(o.activation_id, "8080")
    alpha.close(o.activation_id, ActivationState.FINISHED)  # closed upstream after the code
    clock.advance(shop.settings.RECOVERY_AFTER_SECONDS + 1)
    assert codes(await run(shop)) == ["order_code_not_recorded"]
    fixed = await run(shop, execute=True)
    assert fixed.status == "fixed"
    final = await shop.orders.get_order(o.id)
    assert final.status == "completed" and final.code == "8080"
    assert (await shop.wallet(user)).balance == 400
    await shop.assert_books_clean()


async def test_closed_order_still_active_upstream_is_cancelled(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    alpha = shop.providers["alpha"]
    await shop.orders.cancel(o.id, user_id=user.id)
    await shop.orders.drain_background()  # the upstream cancel runs after the answer
    alpha.activations[o.activation_id].state = ActivationState.WAITING  # provider "forgot" it
    assert codes(await run(shop)) == ["closed_order_active_upstream"]
    assert (await run(shop, execute=True)).status == "fixed"
    assert alpha.activations[o.activation_id].state == ActivationState.CANCELLED
    assert (await run(shop)).status == "clean"


# ---------------------------------------------------------------- flags only


async def test_cost_mismatch_and_provider_failures_are_flagged_for_staff(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    alpha = shop.providers["alpha"]
    alpha.set_cost(o.activation_id, 75)
    report = await run(shop, execute=True)
    assert codes(report) == ["cost_mismatch"]
    assert report.status == "findings" and report.findings[0].fix is None
    assert "75" in report.findings[0].message and "50" in report.findings[0].message

    alpha.list_failure = ProviderUnavailable("listing down")
    alpha.balance_failure = ProviderUnavailable("balance down")
    report = await run(shop, execute=True)
    assert codes(report) == ["provider_balance_failed", "provider_unreachable"]
    assert report.status == "findings"
    await shop.assert_books_clean()


# ------------------------------------------------------ the run record, alerts


async def test_a_run_is_recorded_with_its_findings_and_fixes_and_alerts_staff(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    shop.providers["alpha"].set_cost(o.activation_id, 51)
    aid = await orphan(shop, clock)
    started = clock.now()
    report = await run(shop, execute=True)
    async with shop.db.read() as conn:
        row = (await conn.execute(select(reconciliation_runs))).mappings().one()
        alert = (
            (await conn.execute(select(outbox_t).where(outbox_t.c.kind == "staff_alert"))).mappings().one()
        )
        balances = (await conn.execute(select(provider_balances))).mappings().all()
    assert row["id"] == report.run_id and row["mode"] == "execute" and row["status"] == "findings"
    assert row["started_at"] == started and row["finished_at"] == clock.now()
    assert sorted(f["code"] for f in row["findings"]) == ["cost_mismatch", "upstream_orphan"]
    assert [(f["code"], f["ref"], f["fixed"]) for f in row["fixes"]] == [("upstream_orphan", aid, True)]
    assert row["checked"]["invariants"] == 7 and row["checked"]["providers"]["alpha"]["active"] == 2
    assert row["checked"]["balances"] == {"alpha": {"amount": 10_000, "currency": "USD"}}
    assert alert["chat_id"] == STAFF_CHAT and f"#{report.run_id}" in alert["payload"]["text"]
    assert "cost_mismatch" in alert["payload"]["text"] and "upstream_orphan" in alert["payload"]["text"]
    assert [(b["provider"], b["amount"], b["taken_at"]) for b in balances] == [("alpha", 10_000, clock.now())]


async def test_scheduled_run_without_staff_chat_alerts_nobody(db, clock):
    s = Shop(db, clock, {"alpha": FlakyProvider("alpha", clock)})
    await s.setup_catalogue()
    await orphan(s, clock)
    report = await reconciler(s).run(execute=True, mode="scheduled")
    assert report.status == "fixed"
    assert await count(db, outbox_t) == 0
    async with db.read() as conn:
        assert await conn.scalar(select(reconciliation_runs.c.mode)) == "scheduled"


async def test_days_bounds_the_orders_compared_upstream(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    shop.providers["alpha"].close(o.activation_id, ActivationState.CANCELLED)
    async with shop.db.begin() as conn:  # an order placed three days ago (its hold is fresh)
        await conn.execute(
            update(orders).where(orders.c.id == o.id).values(created_at=clock.now() - timedelta(days=3))
        )
    assert codes(await run(shop, days=2)) == []
    assert codes(await run(shop, days=4)) == ["order_closed_upstream"]
    with pytest.raises(ValueError):
        await run(shop, days=-1)


# ----------------------------------------------------------- dry run is inert


async def test_dry_run_changes_nothing_anywhere(shop, clock):
    """Every kind of finding at once; a dry run leaves every table and the provider as is."""
    user = await shop.user(1, funds=2000)
    alpha = shop.providers["alpha"]
    overdue = await buy(shop, user, "k1")
    clock.advance(shop.settings.ORDER_MAX_TTL_SECONDS + shop.settings.HOLD_GRACE_SECONDS + 200)
    never_voided = await buy(shop, user, "k2")
    async with shop.db.begin() as conn:
        await conn.execute(
            update(orders)
            .where(orders.c.id == never_voided.id)
            .values(status="expired", upstream_state="cancelled")
        )
    alpha.close(never_voided.activation_id, ActivationState.EXPIRED)
    closed = await buy(shop, user, "k3")
    alpha.close(closed.activation_id, ActivationState.CANCELLED)
    mismatch = await buy(shop, user, "k4")
    alpha.set_cost(mismatch.activation_id, 99)
    clock.advance(shop.settings.RECOVERY_AFTER_SECONDS + 1)
    await orphan(shop, clock)

    before = await dump(shop.db)
    calls = list(alpha.calls)
    report = await run(shop)
    assert codes(report) == [
        "cost_mismatch",
        "hold_overdue",
        "order_closed_hold_not_voided",
        "order_closed_upstream",
        "upstream_orphan",
    ]
    assert report.run_id is None and not any(f.fixed for f in report.findings)
    assert await dump(shop.db) == before
    assert [c for c in alpha.calls if c[0] in ("cancel", "finish", "rent")] == [
        c for c in calls if c[0] in ("cancel", "finish", "rent")
    ]

    fixed = await run(shop, execute=True)
    assert [f.code for f in fixed.remaining] == ["cost_mismatch"]
    assert await status_of(shop, overdue.id) == "expired"
    assert await status_of(shop, closed.id) == "failed"
    second = await run(shop, execute=True)
    assert codes(second) == ["cost_mismatch"] and second.fixes == []
    await shop.assert_books_clean()
