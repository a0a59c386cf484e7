"""Daily rollups against a direct computation over the same seeded orders and transfers."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import timedelta

from sqlalchemy import insert

from core import ledger, rollups
from core.db.engine import Database
from core.db.tables import orders, transfers
from tests.integration.orders_support import Shop

PROVIDERS = ("alpha", "beta", None)
SERVICES = ("whatsapp", "google", "telegram")
COUNTRIES = ("GB", "US", "DE")
STATUSES = ("completed", "cancelled", "expired", "failed", "refunded", "waiting")
METHODS = ("stars:", "crypto:", "")


async def seed(shop: Shop, n: int, rng: random.Random) -> dict[str, list[dict]]:
    """Orders over the last 35 days (some before the window) with their transfers."""
    now = shop.clock.now()
    user = await shop.user(1)
    async with shop.db.begin() as conn:
        revenue = await ledger.system_account(conn, ledger.REVENUE)
        topups = await ledger.system_account(conn, ledger.TOPUPS)
    made: dict[str, list[dict]] = {"orders": [], "transfers": []}
    for i in range(n):
        at = now - timedelta(seconds=rng.randint(0, 35 * 86400))
        status = rng.choice(STATUSES)
        hold = {
            "id": f"h{i}",
            "kind": "pending",
            "debit_account_id": user.wallet_account_id,
            "credit_account_id": revenue,
            "amount": rng.randint(10, 500),
            "code": "purchase",
            "order_id": f"o{i}",
            "created_at": at,
        }
        made["transfers"].append(hold)
        later = at + timedelta(seconds=rng.randint(1, 1500))
        if status in ("completed", "refunded") and later <= now:
            made["transfers"].append(
                {**hold, "id": f"c{i}", "kind": "post_pending", "code": "capture", "created_at": later}
            )
            if status == "refunded":
                made["transfers"].append(
                    {
                        **hold,
                        "id": f"r{i}",
                        "kind": "posted",
                        "debit_account_id": revenue,
                        "credit_account_id": user.wallet_account_id,
                        "code": "refund",
                        "created_at": min(now, later + timedelta(hours=3)),
                    }
                )
        elif status in ("cancelled", "expired", "failed") and later <= now:
            made["transfers"].append(
                {**hold, "id": f"v{i}", "kind": "void_pending", "code": "release", "created_at": later}
            )
        made["orders"].append(
            {
                "id": f"o{i}",
                "user_id": user.id,
                "service": rng.choice(SERVICES),
                "country": rng.choice(COUNTRIES),
                "price": hold["amount"],
                "status": status,
                "hold_transfer_id": hold["id"],
                "provider": rng.choice(PROVIDERS),
                "upstream_state": "none",
                "created_at": at,
                "updated_at": at,
            }
        )
    for i in range(n // 2):
        method = rng.choice(METHODS)
        made["transfers"].append(
            {
                "id": f"t{i}",
                "kind": "posted",
                "debit_account_id": topups,
                "credit_account_id": user.wallet_account_id,
                "amount": rng.randint(100, 900),
                "code": "topup",
                "reference": f"{method}{i}" if method else None,
                "created_at": now - timedelta(seconds=rng.randint(0, 35 * 86400)),
            }
        )
    async with shop.db.begin() as conn:
        base = {"pending_id": None, "order_id": None, "reference": None}
        await conn.execute(insert(transfers), [{**base, **t} for t in made["transfers"]])
        await conn.execute(insert(orders), made["orders"])
    return made


def direct(made: dict[str, list[dict]], days: list) -> dict[tuple[str, str], list[int]]:
    """The same figures, the slow obvious way."""
    wanted = set(days)
    by_id = {o["id"]: o for o in made["orders"]}
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for o in made["orders"]:
        if o["created_at"].date() not in wanted:
            continue
        out[("orders", "")][0] += 1
        if o["status"] == "waiting":
            continue
        delivered = int(o["status"] in ("completed", "refunded"))
        for metric, key in (
            ("delivery_provider", o["provider"]),
            ("delivery_service", o["service"]),
            ("delivery_country", o["country"]),
        ):
            if key is None:
                continue
            out[(metric, key)][0] += 1
            out[(metric, key)][1] += delivered
    for t in made["transfers"]:
        if t["created_at"].date() not in wanted:
            continue
        if t["code"] == "capture":
            out[("revenue", "")][0] += 1
            out[("revenue", "")][1] += t["amount"]
            seconds = int((t["created_at"] - by_id[t["order_id"]]["created_at"]).total_seconds())
            out[("first_code", rollups.first_code_bucket(seconds))][0] += 1
            out[("first_code_sum", "")][0] += 1
            out[("first_code_sum", "")][1] += seconds
        elif t["code"] in ("release", "refund"):
            reason = "staff_refund" if t["code"] == "refund" else by_id[t["order_id"]]["status"]
            out[("money_back", reason)][0] += 1
            out[("money_back", reason)][1] += t["amount"]
        elif t["code"] == "topup":
            key = rollups.topup_method(t["reference"])
            out[("topup", key)][0] += 1
            out[("topup", key)][1] += t["amount"]
    return dict(out)


def flatten(r: rollups.Rollups) -> dict[tuple[str, str], list[int]]:
    return {(m, k): [n, t] for m, cells in r.by_key.items() for k, (n, t) in cells.items()}


async def test_rollups_match_a_direct_computation(db, clock) -> None:
    shop = Shop(db, clock, {})
    made = await seed(shop, 400, random.Random(21))
    assert await rollups.refresh(db, clock.now()) == rollups.WINDOW_DAYS
    async with db.read() as conn:
        got = await rollups.read(conn, clock.now())
    assert flatten(got) == direct(made, got.days)
    # Per day as well: orders and revenue each day equal the direct counts of that day.
    for day, count in got.series("orders"):
        assert count == sum(1 for o in made["orders"] if o["created_at"].date() == day)
    for day, amount in got.series("revenue", use_total=True):
        assert amount == sum(
            t["amount"] for t in made["transfers"] if t["code"] == "capture" and t["created_at"].date() == day
        )


async def test_settled_days_are_kept_and_today_is_recomputed(db, clock) -> None:
    shop = Shop(db, clock, {})
    made = await seed(shop, 60, random.Random(5))
    assert await rollups.refresh(db, clock.now()) == rollups.WINDOW_DAYS
    # A minute later only today is recomputed (yesterday was computed after it settled).
    clock.advance(60)
    assert await rollups.refresh(db, clock.now()) == 1
    user_id = made["orders"][0]["user_id"]
    now = clock.now()
    async with db.begin() as conn:
        revenue = await ledger.system_account(conn, ledger.REVENUE)
        wallet = await conn.scalar(
            transfers.select().with_only_columns(transfers.c.debit_account_id).where(transfers.c.id == "h0")
        )
        await conn.execute(
            insert(transfers).values(
                id="late",
                kind="pending",
                debit_account_id=wallet,
                credit_account_id=revenue,
                amount=77,
                code="purchase",
                order_id="late",
                created_at=now,
            )
        )
        await conn.execute(
            insert(orders).values(
                id="late",
                user_id=user_id,
                service="whatsapp",
                country="GB",
                price=77,
                status="waiting",
                hold_transfer_id="late",
                upstream_state="none",
                created_at=now,
                updated_at=now,
            )
        )
    async with db.read() as conn:
        before = dict((await rollups.read(conn, now)).series("orders"))[now.date()]
    assert await rollups.refresh(db, now) == 1
    async with db.read() as conn:
        after = dict((await rollups.read(conn, now)).series("orders"))[now.date()]
    assert after == before + 1
    # The next UTC day: the window moves, yesterday (now unsettled) and today are computed.
    clock.set(now.replace(hour=0, minute=30) + timedelta(days=1))
    assert await rollups.refresh(db, clock.now()) == 2


async def test_two_schedulers_refreshing_at_once_store_each_day_once(db, clock) -> None:
    shop = Shop(db, clock, {})
    made = await seed(shop, 120, random.Random(9))
    other = Database(db.url)
    try:
        results = await asyncio.gather(
            rollups.refresh(db, clock.now()), rollups.refresh(other, clock.now()), return_exceptions=True
        )
    finally:
        await other.dispose()
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert all(isinstance(r, int) and 0 < r <= rollups.WINDOW_DAYS for r in results)
    async with db.read() as conn:
        got = await rollups.read(conn, clock.now())
    assert flatten(got) == direct(made, got.days)
