"""Dashboard read latency on a large SQLite shop.

    python -m bench.admin [--orders 1000000] [--transfers 3000000] [--db PATH] [--requests 300]

Seeds (once per --db file; reused when it already has the rows) a year of history: users
with wallets, orders in every status, and their ledger transfers (holds, captures, releases,
refunds, top-ups, adjustments), then times real HTTP requests through the dashboard (in
process, Litestar's test client, logged in as staff): the overview with its charts (their
daily rollups are computed first, as the scheduler's ticker would, and that time is reported
too), the orders list with and without filters at deep keyset positions, an order page, a user
page, the ledger, the audit log, prices and broadcasts. Prints
p50/p99 per page; the last line is one JSON object whose ``*_p99_ms`` keys are the results
(target: ≤ 100 ms each).

Seeding writes rows with the sqlite3 module directly (tens of seconds instead of hours);
reads go through the same code staff use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import create_engine

from core.clock import FakeClock
from core.config import Settings
from core.db.engine import Database
from core.db.tables import metadata

NOW = datetime(2026, 6, 30, 15, 0, tzinfo=UTC)
DAYS = 365
SERVICES = [
    "whatsapp",
    "telegram",
    "google",
    "facebook",
    "instagram",
    "tiktok",
    "twitter",
    "discord",
    "uber",
    "amazon",
    "microsoft",
    "apple",
    "yahoo",
    "viber",
    "wechat",
    "line",
    "signal",
    "paypal",
    "netflix",
    "openai",
]
COUNTRIES = [
    "US",
    "GB",
    "DE",
    "FR",
    "IN",
    "ID",
    "BR",
    "RU",
    "UA",
    "KZ",
    "PL",
    "NL",
    "ES",
    "IT",
    "CA",
    "MX",
    "PH",
    "VN",
    "TH",
    "NG",
]
PROVIDERS = ["simulator", "smsactivate", "textverified"]
# Final statuses by weight; the last hour also has open orders.
STATUS_WEIGHTS = [("completed", 62), ("cancelled", 14), ("expired", 14), ("failed", 8), ("refunded", 2)]


def _ts(when: datetime) -> str:
    """SQLAlchemy's SQLite DateTime storage format (naive UTC)."""
    return when.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def seed(path: Path, n_orders: int, n_transfers: int, n_users: int, rng: random.Random) -> None:
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    have = db.execute("SELECT count(*) FROM orders").fetchone()[0]
    if have >= n_orders:
        print(f"reusing {path}: {have} orders", file=sys.stderr)
        db.close()
        return
    started = time.perf_counter()
    start = NOW - timedelta(days=DAYS)
    created = _ts(start)
    db.executemany(
        "INSERT INTO accounts (id, kind, code, debits_must_not_exceed_credits, debits_posted, "
        "credits_posted, debits_pending, credits_pending, created_at) VALUES (?,?,?,?,0,0,0,0,?)",
        [
            (1, "revenue", "revenue", 0, created),
            (2, "topups", "topups", 0, created),
            (3, "adjustments", "adjustments", 0, created),
        ],
    )
    db.executemany(
        "INSERT INTO services (code, name, popularity) VALUES (?,?,?)",
        [(s, s.title(), 100 - i) for i, s in enumerate(SERVICES)],
    )
    db.executemany("INSERT INTO countries (code, name) VALUES (?,?)", [(c, c) for c in COUNTRIES])
    wallet = {uid: 3 + uid for uid in range(1, n_users + 1)}
    db.executemany(
        "INSERT INTO accounts (id, kind, code, debits_must_not_exceed_credits, debits_posted, "
        "credits_posted, debits_pending, credits_pending, created_at) VALUES (?,'wallet',NULL,1,0,0,0,0,?)",
        [(wallet[u], created) for u in wallet],
    )
    db.executemany(
        "INSERT INTO users (id, telegram_id, username, first_name, language, wallet_account_id, blocked, "
        "unreachable, created_at) VALUES (?,?,?,?,NULL,?,0,0,?)",
        [(u, 10_000_000 + u, f"user{u}", f"User {u}", wallet[u], created) for u in wallet],
    )
    print(f"seeded {n_users} users in {time.perf_counter() - started:.1f}s", file=sys.stderr)

    statuses = [s for s, w in STATUS_WEIGHTS for _ in range(w)]
    span = DAYS * 86400
    order_rows: list[tuple[Any, ...]] = []
    transfer_rows: list[tuple[Any, ...]] = []
    n_transfers_done = 0
    order_sql = (
        "INSERT INTO orders (id, user_id, quote_id, service, country, price, cost, status, version, "
        "hold_transfer_id, provider, activation_id, phone, can_request_another, expires_at, code, "
        "failure_reason, upstream_state, upstream_attempts, next_poll_at, chat_id, created_at, updated_at, "
        "closed_at) VALUES (?,?,NULL,?,?,?,?,?,1,?,?,?,?,0,?,?,NULL,?,0,?,?,?,?,?)"
    )
    transfer_sql = (
        "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount, pending_id, "
        "timeout_at, code, order_id, reference, memo, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    )

    def flush() -> None:
        db.executemany(transfer_sql, transfer_rows)  # holds first: orders point at them
        db.executemany(order_sql, order_rows)
        transfer_rows.clear()
        order_rows.clear()

    # Orders in creation order, each with its hold and its resolution.
    offsets = sorted(rng.random() * span for _ in range(n_orders))
    for i, off in enumerate(offsets):
        at = start + timedelta(seconds=off)
        age = (NOW - at).total_seconds()
        status = rng.choice(statuses) if age > 3600 else rng.choice(["waiting", "completed", "cancelled"])
        if age < 120:
            status = "reserving" if rng.random() < 0.2 else "waiting"
        uid = rng.randint(1, n_users)
        oid, hold = _uuid(rng), _uuid(rng)
        price = rng.randint(20, 400)
        provider = rng.choice(PROVIDERS)
        closed = None if status in ("waiting", "reserving") else at + timedelta(seconds=rng.randint(20, 900))
        transfer_rows.append(
            (
                hold,
                "pending",
                wallet[uid],
                1,
                price,
                None,
                _ts(at + timedelta(minutes=35)),
                "purchase",
                oid,
                None,
                None,
                _ts(at),
            )
        )
        n_transfers_done += 1
        # ``closed`` is set for every status but waiting and reserving.
        if closed is not None and status in ("completed", "refunded"):
            transfer_rows.append(
                (
                    _uuid(rng),
                    "post_pending",
                    wallet[uid],
                    1,
                    price,
                    hold,
                    None,
                    "capture",
                    oid,
                    None,
                    None,
                    _ts(closed),
                )
            )
            n_transfers_done += 1
            if status == "refunded":
                transfer_rows.append(
                    (
                        _uuid(rng),
                        "posted",
                        1,
                        wallet[uid],
                        price,
                        None,
                        None,
                        "refund",
                        oid,
                        f"admin:1:{i}",
                        "bench refund",
                        _ts(closed + timedelta(hours=1)),
                    )
                )
                n_transfers_done += 1
        elif closed is not None and status in ("cancelled", "expired", "failed"):
            transfer_rows.append(
                (
                    _uuid(rng),
                    "void_pending",
                    wallet[uid],
                    1,
                    price,
                    hold,
                    None,
                    "release",
                    oid,
                    None,
                    None,
                    _ts(closed),
                )
            )
            n_transfers_done += 1
        order_rows.append(
            (
                oid,
                uid,
                rng.choice(SERVICES),
                rng.choice(COUNTRIES),
                price,
                price * 5 // 6,
                status,
                hold,
                provider,
                f"{provider[:2]}{i}",
                f"+1555{i:07d}",
                _ts(at + timedelta(minutes=20)),
                f"{rng.randint(0, 999999):06d}" if status in ("completed", "refunded") else None,
                "finished"
                if status in ("completed", "refunded")
                else ("active" if closed is None else "cancelled"),
                _ts(at + timedelta(seconds=5)) if closed is None else None,
                10_000_000 + uid,
                _ts(at),
                _ts(closed or at),
                _ts(closed) if closed else None,
            )
        )
        if len(order_rows) >= 20_000:
            flush()
    flush()
    print(
        f"seeded {n_orders} orders and {n_transfers_done} order transfers in "
        f"{time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    # The rest of the ledger: top-ups and staff adjustments, spread over the year.
    rest = max(0, n_transfers - n_transfers_done)
    for chunk in range(0, rest, 50_000):
        rows: list[tuple[Any, ...]] = []
        for _ in range(min(50_000, rest - chunk)):
            uid = rng.randint(1, n_users)
            created_at = _ts(start + timedelta(seconds=rng.random() * span))
            if rng.random() < 0.95:
                rows.append(
                    (
                        _uuid(rng),
                        "posted",
                        2,
                        wallet[uid],
                        rng.randint(100, 5000),
                        None,
                        None,
                        "topup",
                        None,
                        f"stars:{rng.getrandbits(48):x}",
                        None,
                        created_at,
                    )
                )
            else:
                rows.append(
                    (
                        _uuid(rng),
                        "posted",
                        3,
                        wallet[uid],
                        rng.randint(10, 500),
                        None,
                        None,
                        "adjustment",
                        None,
                        None,
                        "bench goodwill",
                        created_at,
                    )
                )
        db.executemany(transfer_sql, rows)
    # Cached sums on the system accounts, which the overview reads (wallets are not read).
    for acc in (1, 2, 3):
        db.execute(
            """UPDATE accounts SET
            debits_posted = (SELECT coalesce(sum(amount),0) FROM transfers
                WHERE debit_account_id=:a AND kind IN ('posted','post_pending')),
            credits_posted = (SELECT coalesce(sum(amount),0) FROM transfers
                WHERE credit_account_id=:a AND kind IN ('posted','post_pending')),
            credits_pending = (SELECT coalesce(sum(t.amount),0) FROM transfers t
                WHERE t.credit_account_id=:a AND t.kind='pending'
                AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id))
            WHERE id=:a""",
            {"a": acc},
        )
    db.execute(
        "INSERT INTO job_runs (job, last_started_at, last_finished_at) VALUES ('poll', ?, ?)",
        (_ts(NOW - timedelta(seconds=3)), _ts(NOW - timedelta(seconds=2))),
    )
    db.commit()
    db.execute("ANALYZE")
    db.commit()
    db.close()
    print(f"seeded everything in {time.perf_counter() - started:.1f}s", file=sys.stderr)


WARMUP = 5


async def compute_rollups(path: Path) -> float:
    """The overview's thirty days of rollups, as the scheduler's ticker computes them on its
    first run (later runs recompute only today); returns the seconds it took."""
    from core import rollups

    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        t0 = time.perf_counter()
        await rollups.refresh(db, NOW)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        await rollups.refresh(db, NOW + timedelta(minutes=1))  # a later run: today only
        later = time.perf_counter() - t0
        print(f"rollups: first run {first * 1000:.0f} ms, a later run {later * 1000:.0f} ms", file=sys.stderr)
        return first
    finally:
        await db.dispose()


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(path: Path, requests: int, rng: random.Random, only: set[str]) -> dict[str, float]:
    from argon2 import PasswordHasher
    from litestar.stores.memory import MemoryStore
    from litestar.testing import AsyncTestClient

    from admin.app import create_app
    from admin.queries import encode_cursor
    from core import ledger
    from core.orders import OrderService
    from core.staff import StaffAccounts
    from core.wallets import Wallets

    clock = FakeClock(NOW)
    settings = Settings(  # type: ignore[call-arg]  # _env_file is BaseSettings.__init__'s, not a field
        _env_file=None, DATABASE_URL=f"sqlite+aiosqlite:///{path}", ADMIN_SECRET_KEY="b" * 32
    )
    db = Database(settings.DATABASE_URL)
    ledger.forget_system_accounts()
    staff = StaffAccounts(db, clock, PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    if await staff.find("bench") is None:
        await staff.create("bench", "admin", "bench password")
    await db.dispose()
    core = SimpleNamespace(
        settings=settings,
        db=db,
        clock=clock,
        board=None,
        providers={},
        wallets=Wallets(db, clock, "USD"),
        orders=OrderService(db, clock, {}, settings),
    )
    app = create_app(core, store=MemoryStore(), staff_accounts=staff, secret_key="c" * 64)
    app.on_shutdown.append(db.dispose)

    async with AsyncTestClient(app=app, base_url="http://localhost") as client:
        page = (await client.get("/login")).text
        token = re.search(r'name="_csrf_token" value="([0-9a-f]+)"', page)
        assert token, "the login page carries no CSRF token"
        r = await client.post(
            "/login",
            data={"username": "bench", "password": "bench password", "_csrf_token": token.group(1)},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text

        # At least as many as the warm-up requests use (the first five of each page).
        deep = [NOW - timedelta(days=rng.uniform(30, DAYS - 5)) for _ in range(max(requests, WARMUP))]
        some_order = (await client.get("/api/orders", params={"limit": 1})).json()["items"][0]["id"]

        def deep_cursor(i: int) -> str:
            return encode_cursor(deep[i], "ffffffff-ffff-4fff-bfff-ffffffffffff")

        pages: dict[str, Any] = {
            "overview": lambda i: "/",
            "orders": lambda i: "/orders",
            "orders_deep": lambda i: f"/orders?cursor={deep_cursor(i)}",
            "orders_filtered_deep": lambda i: (
                f"/orders?status={['completed', 'cancelled', 'expired'][i % 3]}"
                f"&service={SERVICES[i % 5]}&cursor={deep_cursor(i)}"
            ),
            "orders_rare_filter_deep": lambda i: (
                f"/orders?status=refunded&country={COUNTRIES[i % len(COUNTRIES)]}&cursor={deep_cursor(i)}"
            ),
            "orders_user": lambda i: f"/orders?user={10_000_000 + rng.randint(1, 1000)}",
            "order": lambda i: f"/orders/{some_order}",
            "user": lambda i: f"/users/{10_000_000 + rng.randint(1, 1000)}",
            "ledger_deep": lambda i: f"/ledger?cursor={deep_cursor(i)}",
            "audit": lambda i: "/audit",
            "prices": lambda i: "/prices",
            "broadcasts": lambda i: "/broadcasts",
            "metrics": lambda i: "/metrics",
        }
        results: dict[str, float] = {}
        for name, make in pages.items():
            if only and name not in only:
                continue
            for i in range(WARMUP):  # the first requests compile templates and fill caches
                await client.get(make(i))
            samples = []
            for i in range(requests):
                url = make(i)
                t0 = time.perf_counter()
                r = await client.get(url)
                samples.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    raise SystemExit(f"{url} → {r.status_code}: {r.text[:300]}")
            results[f"{name}_p50_ms"] = round(statistics.median(samples), 2)
            results[f"{name}_p99_ms"] = round(_pct(samples, 0.99), 2)
            print(
                f"{name:28s} p50 {results[f'{name}_p50_ms']:8.2f} ms"
                f"   p99 {results[f'{name}_p99_ms']:8.2f} ms",
                file=sys.stderr,
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.admin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--transfers", type=int, default=3_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--db", type=Path, default=None, help="SQLite file to seed or reuse")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated page names to time (default: all)")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    path = args.db or Path(tempfile.gettempdir()) / f"numbershop-bench-admin-{args.orders}.db"
    rng = random.Random(args.seed)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    seed(path, args.orders, args.transfers, args.users, rng)
    rollup_s = asyncio.run(compute_rollups(path))
    results = asyncio.run(measure(path, args.requests, rng, {n for n in args.only.split(",") if n}))
    results["rollups_first_run_ms"] = round(rollup_s * 1000, 1)
    results.update(
        orders=args.orders,
        transfers=args.transfers,
        requests=args.requests,
        target_p99_ms=100,
        within_target=all(v <= 100 for k, v in results.items() if k.endswith("_p99_ms")),
    )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
