"""Purchase lifecycle throughput against a hand-written minimum on the same driver.

    python -m bench.lifecycle --db sqlite
    python -m bench.lifecycle --db postgres [--url postgresql://…]   # or NUMBERSHOP_TEST_POSTGRES_URL

Shop run: 100 concurrent simulated users each do full lifecycles through core's services
against the in-process simulator with zero latency: buy (three phases) → code arrives →
the code is recorded and the hold captured; a share of orders is cancelled instead (final
check, void). Baseline run, same process, same engine and concurrency: the minimum the
semantics need per lifecycle, written by hand —
T1: guarded UPDATE of the wallet + UPDATE of revenue + INSERT hold transfer + INSERT order;
T2: UPDATE order (number assigned); T3: INSERT capture transfer + UPDATE both accounts +
UPDATE order. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from sqlalchemy import text

from bench._support import percentile, throwaway_database
from core import catalogue, ledger
from core.clock import SystemClock
from core.config import Settings
from core.db.engine import Database
from core.db.tables import metadata
from core.invariants import check_invariants
from core.orders import OrderService
from core.providers.simulator import SimulatorProvider
from core.quotes import create_quote
from core.users import UserRow, get_or_create_user

SERVICE, COUNTRY = "whatsapp", "GB"


class RunResult(TypedDict):
    per_s: float
    latencies: list[float]
    n: int


async def _prepare(db: Database, users: int, funds: int) -> list[UserRow]:
    clock = SystemClock()
    async with db.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await ledger.ensure_system_accounts(conn, clock.now())
        await catalogue.seed_reference_data(conn)
    out: list[UserRow] = []
    async with db.begin() as conn:
        topups = await ledger.system_account(conn, ledger.TOPUPS)
        for i in range(users):
            user = await get_or_create_user(conn, telegram_id=10_000 + i, now=clock.now())
            await ledger.post_transfer(
                conn,
                id=ledger.new_id(),
                debit=topups,
                credit=user.wallet_account_id,
                amount=funds,
                code="topup",
                now=clock.now(),
            )
            out.append(user)
    return out


async def run_shop(
    db: Database, users: list[UserRow], per_user: int, cancel_share: float, round_: int = 0
) -> RunResult:
    clock = SystemClock()
    settings = Settings()
    sim = SimulatorProvider(seed=7 + round_, clock=clock, code_delay_s=None, name=f"simulator{round_ or ''}")
    sim.set_offer(SERVICE, COUNTRY, cost=50, stock=10_000_000)
    await catalogue.sync_catalogue(db, sim, clock)
    service = OrderService(db, clock, {sim.name: sim}, settings)
    quotes: dict[int, str] = {}
    async with db.begin() as conn:
        for user in users:
            quotes[user.id] = (
                await create_quote(
                    conn,
                    user_id=user.id,
                    service=SERVICE,
                    country=COUNTRY,
                    markup_percent=settings.MARKUP_PERCENT,
                    now=clock.now(),
                    ttl_seconds=3600,
                )
            ).id
    latencies: list[float] = []
    rng = random.Random(11)

    async def user_loop(user: UserRow) -> None:
        for i in range(per_user):
            cancel = rng.random() < cancel_share
            start = time.perf_counter()
            order = await service.purchase(
                user_id=user.id, quote_id=quotes[user.id], idempotency_key=f"bench:{round_}:{user.id}:{i}"
            )
            if cancel:
                await service.cancel(order.id, user_id=user.id)
            else:
                if order.activation_id is None:
                    raise RuntimeError(f"order {order.id} has no number ({order.status})")
                msg = sim.deliver_code(order.activation_id)
                await service.record_messages(order.id, [msg])
            latencies.append(time.perf_counter() - start)

    t0 = time.perf_counter()
    await asyncio.gather(*(user_loop(u) for u in users))
    elapsed = time.perf_counter() - t0
    return {"per_s": len(latencies) / elapsed, "latencies": latencies, "n": len(latencies)}


async def run_baseline(db: Database, users: list[UserRow], per_user: int) -> RunResult:
    """The minimum statements per lifecycle, by hand, through the same engine."""
    now = datetime.now(UTC)
    async with db.read() as conn:
        revenue = await ledger.system_account(conn, ledger.REVENUE)
    latencies: list[float] = []
    naive = now.replace(tzinfo=None)
    t1_wallet = text(
        "UPDATE accounts SET debits_pending = debits_pending + :a WHERE id = :w "
        "AND debits_posted + debits_pending + :a <= credits_posted"
    )
    t1_rev = text("UPDATE accounts SET credits_pending = credits_pending + :a WHERE id = :r")
    ins_transfer = text(
        "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount, "
        "pending_id, timeout_at, code, order_id, created_at) VALUES "
        "(:id, :kind, :d, :c, :a, :p, :t, :code, :o, :now)"
    )
    ins_order = text(
        "INSERT INTO orders (id, user_id, service, country, price, status, version, "
        "hold_transfer_id, upstream_state, upstream_attempts, can_request_another, "
        "created_at, updated_at) VALUES (:id, :u, :s, :c, :p, 'reserving', 1, :h, 'none', 0, "
        ":f, :now, :now)"
    )
    t2 = text(
        "UPDATE orders SET status='waiting', phone=:ph, activation_id=:aid, "
        "version=version+1 WHERE id=:id AND status='reserving'"
    )
    t3_wallet = text(
        "UPDATE accounts SET debits_pending = debits_pending - :a, "
        "debits_posted = debits_posted + :a WHERE id = :w"
    )
    t3_rev = text(
        "UPDATE accounts SET credits_pending = credits_pending - :a, "
        "credits_posted = credits_posted + :a WHERE id = :r"
    )
    t3_order = text(
        "UPDATE orders SET status='completed', version=version+1 WHERE id=:id AND status='waiting'"
    )
    amount = 1

    async def user_loop(user: UserRow) -> None:
        for _ in range(per_user):
            start = time.perf_counter()
            oid, hid = str(uuid.uuid4()), str(uuid.uuid4())
            async with db.begin() as conn:
                res = await conn.execute(t1_wallet, {"a": amount, "w": user.wallet_account_id})
                assert res.rowcount == 1
                await conn.execute(t1_rev, {"a": amount, "r": revenue})
                await conn.execute(
                    ins_transfer,
                    {
                        "id": hid,
                        "kind": "pending",
                        "d": user.wallet_account_id,
                        "c": revenue,
                        "a": amount,
                        "p": None,
                        "t": naive + timedelta(hours=1),
                        "code": "purchase",
                        "o": oid,
                        "now": naive,
                    },
                )
                await conn.execute(
                    ins_order,
                    {
                        "id": oid,
                        "u": user.id,
                        "s": SERVICE,
                        "c": COUNTRY,
                        "p": amount,
                        "h": hid,
                        "f": False,
                        "now": naive,
                    },
                )
            async with db.begin() as conn:
                await conn.execute(t2, {"ph": "+440000", "aid": oid, "id": oid})
            async with db.begin() as conn:
                await conn.execute(
                    ins_transfer,
                    {
                        "id": str(uuid.uuid4()),
                        "kind": "post_pending",
                        "d": user.wallet_account_id,
                        "c": revenue,
                        "a": amount,
                        "p": hid,
                        "t": None,
                        "code": "capture",
                        "o": oid,
                        "now": naive,
                    },
                )
                await conn.execute(t3_wallet, {"a": amount, "w": user.wallet_account_id})
                await conn.execute(t3_rev, {"a": amount, "r": revenue})
                await conn.execute(t3_order, {"id": oid})
            latencies.append(time.perf_counter() - start)

    t0 = time.perf_counter()
    await asyncio.gather(*(user_loop(u) for u in users))
    elapsed = time.perf_counter() - t0
    return {"per_s": len(latencies) / elapsed, "latencies": latencies, "n": len(latencies)}


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.lifecycle")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--url", help="PostgreSQL URL (default NUMBERSHOP_TEST_POSTGRES_URL)")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--per-user", type=int, default=20)
    parser.add_argument("--cancel-share", type=float, default=0.2)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternate baseline and shop runs this many times; the best of "
        "each is reported, so a burst of load on the machine during one "
        "run does not decide the ratio",
    )
    args = parser.parse_args(argv)

    async with throwaway_database(args.db, args.url, "bench.lifecycle") as db:
        users = await _prepare(db, args.users, funds=10_000_000)
        baselines: list[RunResult] = []
        shops: list[RunResult] = []
        for round_ in range(args.rounds):
            baselines.append(await run_baseline(db, users, args.per_user))
            shops.append(await run_shop(db, users, args.per_user, args.cancel_share, round_))
            print(
                f"round {round_ + 1}: shop {shops[-1]['per_s']:.1f}/s, "
                f"baseline {baselines[-1]['per_s']:.1f}/s",
                file=sys.stderr,
            )
        baseline = max(baselines, key=lambda r: r["per_s"])
        shop = max(shops, key=lambda r: r["per_s"])
        violations = await check_invariants(db, datetime.now(UTC))
    result = {
        "db": args.db,
        "users": args.users,
        "lifecycles": shop["n"],
        "lifecycles_per_s": round(shop["per_s"], 1),
        "baseline_per_s": round(baseline["per_s"], 1),
        "ratio": round(shop["per_s"] / baseline["per_s"], 3),
        "p50_ms": round(statistics.median(shop["latencies"]) * 1000, 1),
        "p99_ms": round(percentile(shop["latencies"], 0.99) * 1000, 1),
        "baseline_p50_ms": round(statistics.median(baseline["latencies"]) * 1000, 1),
        "baseline_p99_ms": round(percentile(baseline["latencies"], 0.99) * 1000, 1),
        "invariants_ok": not violations,
    }
    if violations:
        print(f"invariant violations: {violations[:5]}", file=sys.stderr)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    asyncio.run(main())
