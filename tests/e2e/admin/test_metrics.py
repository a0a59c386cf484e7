"""/metrics parsed as Prometheus parses it, each value checked against the database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from core import tickets
from core.db.tables import job_runs, orders, outbox, provider_balances, transfers

from .conftest import buy, complete, login, nonce, post_form


@pytest.fixture
async def admin_client(client, staff):
    await login(client, "admin")
    return client


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_match_the_database(admin_client, shop, db, clock) -> None:
    made = [await buy(shop, 950 + i, funds=1000, price=100 + i) for i in range(3)]
    await complete(shop, made[0])
    await tickets.open_ticket(db, clock, order_id=made[0].id, user_id=made[0].user_id)  # "didn't work"
    await post_form(
        admin_client, f"/orders/{made[0].id}/refund", {"reason": "did not work", "nonce": nonce()}
    )
    await shop.orders.cancel(made[1].id, actor="user")
    now = clock.now()
    async with db.begin() as conn:
        await conn.execute(
            outbox.insert().values(
                dedupe_key="metrics-test",
                kind="staff_alert",
                chat_id=1,
                payload={"text": "x"},
                status="pending",
                created_at=now - timedelta(seconds=90),
                attempts=0,
                next_attempt_at=now,
            )
        )
        await conn.execute(
            job_runs.insert().values(job="poll_orders", last_finished_at=now - timedelta(seconds=30))
        )
        await conn.execute(
            provider_balances.insert().values(provider="alpha", amount=4321, currency="USD", taken_at=now)
        )
    r = await admin_client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = _samples(r.text)

    async with db.read() as conn:
        by_status = dict(
            (await conn.execute(select(orders.c.status, func.count()).group_by(orders.c.status))).all()
        )
        refunds = (
            await conn.execute(
                select(func.count(), func.coalesce(func.sum(transfers.c.amount), 0)).where(
                    transfers.c.code == "refund"
                )
            )
        ).one()
        captured = await conn.scalar(
            select(func.coalesce(func.sum(transfers.c.amount), 0)).where(transfers.c.code == "capture")
        )
        held = await conn.scalar(
            select(func.coalesce(func.sum(orders.c.price), 0)).where(
                orders.c.status.in_(("waiting", "reserving"))
            )
        )
        pending = await conn.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.status == "pending")
        )
    for status in ("reserving", "waiting", "completed", "cancelled", "expired", "failed", "refunded"):
        assert got[("numbershop_orders_today", (("status", status),))] == by_status.get(status, 0), status
    assert by_status == {"refunded": 1, "cancelled": 1, "waiting": 1}
    assert got[("numbershop_orders_open", (("status", "waiting"),))] == 1
    assert got[("numbershop_refunds_today", ())] == refunds[0] == 1
    assert got[("numbershop_refunds_today_minor", ())] == refunds[1] == 100
    assert got[("numbershop_released_holds_today", ())] == 1
    assert got[("numbershop_captured_today_minor", ())] == captured == 100
    assert got[("numbershop_held_minor", ())] == held == 102
    assert got[("numbershop_wallets_minor", ())] == 3 * 1000 - 100 + 100
    assert got[("numbershop_outbox_backlog", ())] == pending >= 1
    assert got[("numbershop_outbox_oldest_seconds", ())] >= 90
    assert got[("numbershop_job_lag_seconds", (("job", "poll_orders"),))] == 30
    assert got[("numbershop_provider_balance_minor", (("currency", "USD"), ("provider", "alpha")))] == 4321
    assert got[("numbershop_breaker_state", (("provider", "alpha"),))] == 0
    assert got[("numbershop_breaker_failures", (("provider", "alpha"),))] == 0
    assert got[("numbershop_tickets_open", ())] == await tickets.count_open(db) == 1
