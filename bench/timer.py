"""The live timer under load: do redraws of waiting orders slow down the codes?

    python -m bench.timer [--orders 2000] [--minutes 20] [--codes 0.75] [--db sqlite|postgres]

2,000 waiting orders, each in its own chat, for 20 simulated minutes; a share of them
(``--codes``) get their code at a random moment. The notification path is the real one: core
records each code (capture, outbox row) and the real ``bot.sender.OutboxSender`` drains the
outbox through its real limits (25 calls/s, one per chat per second, redraws at most a fifth),
into a fake bot that stamps every call with its simulated time. The timer job
(``core.orders.timer``) runs every 5 simulated seconds.

Simulated time: a ``FakeClock`` steps 0.1 s at a time. The sender's limiter reads that clock;
its sleeps return at once but are added to the caller's own elapsed time (a context
variable), so a call's stamp is the moment it would really be made. The driver keeps the
sender's own rhythm: after a batch it drains again only when the batch's last call is due,
and after an empty drain it idles ``idle_seconds`` (0.5 s), as ``OutboxSender.run`` does.

Two runs on the same seed, in this process: without the timer (the baseline) and with it.
Code-notification latency = from the code being recorded to the stamp of the sendMessage
that carries it. The last line is one JSON object: ``ratio`` (code p99 with redraws ÷
without; goal ≤ 1.1), ``max_edits_per_s`` (editMessageText calls in any one simulated
second, all kinds) and ``max_redraws_per_s`` (the timer's calls: redraws and reminders)
against their budgets, ``max_per_chat_per_s``
(edits in one chat in one second) and ``max_calls_per_chat_per_s`` (any call; a code is a
message plus the order screen's edit), and both runs' p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from aiogram import Bot

from bench._support import percentile, throwaway_database
from bot.sender import OutboxSender
from core import catalogue, ledger
from core.app import Core, build_core
from core.clock import FakeClock
from core.config import Settings
from core.db.engine import Database
from core.db.tables import metadata
from core.invariants import check_invariants
from core.providers.base import SmsMessage
from core.providers.simulator import SimulatorProvider
from core.quotes import create_quote
from core.users import get_or_create_user

SERVICE, COUNTRY = "whatsapp", "GB"
STEP_S = 0.1
TIMER_EVERY_S = 5.0
PER_SECOND = 25.0
FIRST_CHAT = 50_000_000
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

_elapsed: contextvars.ContextVar[float] = contextvars.ContextVar("elapsed", default=0.0)


@dataclass
class Call:
    method: str
    chat_id: int
    at: float
    text: str


@dataclass
class FakeBot:
    """Stands in for aiogram's Bot: records each call at its simulated moment."""

    now: Any
    calls: list[Call] = field(default_factory=list)
    token: str = "900003:bench-timer"

    async def send_message(self, chat_id: int, text: str, reply_markup: Any = None) -> None:
        self.calls.append(Call("sendMessage", chat_id, self.now() + _elapsed.get(), text))

    async def edit_message_text(
        self, *, text: str, chat_id: int, message_id: int, reply_markup: Any = None
    ) -> None:
        self.calls.append(Call("editMessageText", chat_id, self.now() + _elapsed.get(), text))


def _low(call: Call) -> bool:
    """A timer call: a waiting order's redraw or its reminder (no order is bought meanwhile,
    so every edit of a waiting screen is a redraw)."""
    return call.text.startswith("⏰") or (
        call.method == "editMessageText" and "Waiting for the code" in call.text
    )


async def _sleep(seconds: float) -> None:
    _elapsed.set(_elapsed.get() + seconds)
    await asyncio.sleep(0)


async def _prepare(db: Database, clock: FakeClock, orders: int) -> tuple[Core, SimulatorProvider, list[str]]:
    sim = SimulatorProvider(seed=7, clock=clock, code_delay_s=None)
    sim.set_offer(SERVICE, COUNTRY, cost=50, stock=10_000_000)
    settings = Settings(_env_file=None, DATABASE_URL=db.url, PROVIDERS=("simulator",))  # type: ignore[call-arg]
    core = build_core(settings, clock=clock, providers={"simulator": sim}, db=db)
    async with db.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await ledger.ensure_system_accounts(conn, clock.now())
        await catalogue.seed_reference_data(conn)
    await catalogue.sync_catalogue(db, sim, clock)
    users: list[tuple[int, int, str]] = []
    async with db.begin() as conn:
        topups = await ledger.system_account(conn, ledger.TOPUPS)
        for i in range(orders):
            user = await get_or_create_user(conn, telegram_id=FIRST_CHAT + i, now=clock.now())
            await ledger.post_transfer(
                conn,
                id=ledger.new_id(),
                debit=topups,
                credit=user.wallet_account_id,
                amount=10_000,
                code="topup",
                now=clock.now(),
            )
            quote = await create_quote(
                conn,
                user_id=user.id,
                service=SERVICE,
                country=COUNTRY,
                markup_percent=settings.MARKUP_PERCENT,
                now=clock.now(),
                ttl_seconds=3600,
            )
            users.append((user.id, FIRST_CHAT + i, quote.id))
    ids: list[str] = []
    for user_id, chat, quote_id in users:
        order = await core.orders.purchase(
            user_id=user_id, quote_id=quote_id, idempotency_key=f"timer:{chat}", chat_id=chat, message_id=1
        )
        ids.append(order.id)
    return core, sim, ids


async def run(
    db: Database, *, orders: int, minutes: float, codes: float, redraws: bool, seed: int
) -> dict[str, Any]:
    clock = FakeClock(START)
    core, sim, ids = await _prepare(db, clock, orders)
    t0 = clock.now().timestamp()

    def now() -> float:
        return clock.now().timestamp() - t0

    bot = FakeBot(now)
    sender = OutboxSender(
        cast(Bot, bot),
        core,
        per_second=PER_SECOND,
        sleep=_sleep,
        monotonic=now,
        low_share=core.settings.OUTBOX_LOW_PRIORITY_SHARE,
    )
    rng = random.Random(seed)
    horizon = minutes * 60
    coded = rng.sample(ids, int(len(ids) * codes))
    arrivals = sorted((rng.uniform(10, horizon - 10), order_id) for order_id in coded)
    chat_of = {order_id: FIRST_CHAT + i for i, order_id in enumerate(ids)}
    recorded_at: dict[int, tuple[float, str]] = {}  # chat → (when recorded, code)
    next_drain = 0.0
    next_timer = 0.0
    wall = time.perf_counter()
    while now() < horizon:
        clock.advance(STEP_S)
        t = now()
        due = []
        while arrivals and arrivals[0][0] <= t:
            _, order_id = arrivals.pop(0)
            code = f"{rng.randrange(10**6):06d}"
            due.append((order_id, [SmsMessage(f"m:{order_id}", code, f"Your code is {code}")]))
            recorded_at[chat_of[order_id]] = (t, code)
        if due:
            await core.orders.record_many(due, actor="scheduler")
        if redraws and t >= next_timer:
            await core.orders.redraw_due()
            next_timer = t + TIMER_EVERY_S
        if t >= next_drain:
            before = len(bot.calls)
            _elapsed.set(0.0)
            claimed = await sender.drain_once()
            # The low-priority rows it started run beside the next drains, not before them:
            # they finish within this simulated instant (their own waits are in their stamps),
            # and only the codes' and notices' calls decide when the sender drains again.
            await sender.settle_low()
            stamps = [c.at for c in bot.calls[before:] if not _low(c)]
            next_drain = max([t, *stamps]) if claimed else t + sender.idle_seconds
    await sender.settle_low()
    latencies = []
    for chat, (at, code) in recorded_at.items():
        sent = next(
            (c.at for c in bot.calls if c.chat_id == chat and c.method == "sendMessage" and code in c.text),
            None,
        )
        if sent is not None:
            latencies.append(sent - at)
    edits_per_s: Counter[int] = Counter()
    reminders = sum(1 for c in bot.calls if c.text.startswith("⏰"))
    redraws_per_s: Counter[int] = Counter()
    per_chat_edits: Counter[tuple[int, int]] = Counter()
    per_chat_calls: Counter[tuple[int, int]] = Counter()
    by_chat: dict[int, list[float]] = defaultdict(list)
    for c in bot.calls:
        second = math.floor(c.at)
        per_chat_calls[(c.chat_id, second)] += 1
        if _low(c):
            redraws_per_s[second] += 1  # the timer's calls, reminders included
        if c.method == "editMessageText":
            edits_per_s[second] += 1
            per_chat_edits[(c.chat_id, second)] += 1
            if _low(c):
                by_chat[c.chat_id].append(c.at)
    violations = await check_invariants(db, clock.now(), 0)
    return {
        "codes": len(recorded_at),
        "delivered": len(latencies),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "calls": len(bot.calls),
        "redraws": sum(redraws_per_s.values()),
        "max_edits_per_s": max(edits_per_s.values(), default=0),
        "max_redraws_per_s": max(redraws_per_s.values(), default=0),
        "max_per_chat_per_s": max(per_chat_edits.values(), default=0),
        "max_calls_per_chat_per_s": max(per_chat_calls.values(), default=0),
        "chats_redrawn": len(by_chat),
        "reminders": reminders,
        "wall_s": round(time.perf_counter() - wall, 1),
        "violations": len(violations),
    }


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.timer")
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--codes", type=float, default=0.75, help="share of orders that get a code")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    results = {}
    for name, redraws in (("without", False), ("with", True)):
        async with throwaway_database(args.db, args.url, "bench.timer") as db:
            results[name] = await run(
                db,
                orders=args.orders,
                minutes=args.minutes,
                codes=args.codes,
                redraws=redraws,
                seed=args.seed,
            )
        print(name, json.dumps(results[name]), file=sys.stderr)
    base, timed = results["without"], results["with"]
    ratio = timed["p99_ms"] / base["p99_ms"] if base["p99_ms"] else float("inf")
    out = {
        "ratio": round(ratio, 3),
        "goal": 1.1,
        "max_edits_per_s": timed["max_edits_per_s"],
        "edit_budget_per_s": PER_SECOND,
        "max_redraws_per_s": timed["max_redraws_per_s"],
        "redraw_budget_per_s": PER_SECOND * Settings(_env_file=None).OUTBOX_LOW_PRIORITY_SHARE,  # type: ignore[call-arg]
        "max_per_chat_per_s": timed["max_per_chat_per_s"],
        "max_calls_per_chat_per_s": timed["max_calls_per_chat_per_s"],
        "p50_ms_without": base["p50_ms"],
        "p99_ms_without": base["p99_ms"],
        "p50_ms_with": timed["p50_ms"],
        "p99_ms_with": timed["p99_ms"],
        "codes": timed["codes"],
        "delivered_with": timed["delivered"],
        "delivered_without": base["delivered"],
        "redraws": timed["redraws"],
        "chats_redrawn": timed["chats_redrawn"],
        "orders": args.orders,
        "minutes": args.minutes,
        "violations": base["violations"] + timed["violations"],
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    result = asyncio.run(main())
    sys.exit(1 if result["violations"] or result["delivered_with"] < result["codes"] else 0)
