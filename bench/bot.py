"""Bot latency under load: the shop bot against a minimal echo bot, same emulator, same run.

    python -m bench.bot [--users 200] [--rounds 3] [--db sqlite|postgres] [--url postgresql://…]
    python -m bench.bot --webhook --workers 2 --db postgres   # capacity, see bench.capacity

This process runs the Bot API emulator and the simulated users; the bot under test runs in
a process of its own (``--serve echo|shop``, started here), a real aiogram client
long-polling the emulator over real HTTP, as a deployed bot polls Telegram. Keeping the
users and the emulator out of the bot's process means the bot's event loop only carries the
bot, as in production. The two bots are measured one after the other, each with
``--users`` users at once, each user pausing ``--think-min``…``--think-max`` seconds between
taps like a (quick) person:

* echo: a minimal aiogram bot (text → the same text with one button; button →
  answerCallbackQuery); each user sends as many updates as a shop journey has, alternating
  texts and button presses;
* shop: the real bot (``bot.app.build_app``) on a fresh database with the simulator
  provider, its notification sender running: /start → Balance → a Stars package → pay
  (pre-checkout, successful payment) → Menu → Buy number → WhatsApp → the cheapest country →
  Buy → Check now until the code is there (the sender posts it) → My orders; every fourth
  user cancels at once instead.

Latency of one update = from the emulator creating it to the first Bot API call the bot
makes in that chat afterwards (``EmulatedBot.first_reply``), one ``perf_counter`` clock.
``--rounds`` (3 by default) repeats echo-then-shop with new users on the same schedule; on a
small machine one burst can land badly and the same code measured 6× to 34× in single
rounds, so the reported ``ratio`` is the median of the rounds' ratios (shop p99 / echo p99),
next to each round's ratio, both bots' p50/p99 in ms over all rounds and ``cpu_ratio`` (the
shop's CPU per update over the echo bot's: the work behind the queues, and far steadier than
p99 from run to run), in one JSON object on the last line. Exit status 1 if any journey
failed or the books do not balance afterwards.

Users arrive over ``--ramp`` seconds (5 by default: they move through the journey nearly in
step, so about 200 Buy taps land within a few seconds — the burst case; ``--ramp 30``
spreads them into a steady state). Both bots freeze their start-up objects out of the
garbage collector, as ``numbershop bot run`` does. The driver (this process) keeps its own
cyclic collector off while a bot is measured, as ``timeit`` does: it stamps every latency on
its loop, and by the third round its full collections took 250 ms, booked as the bot's
latency. ``driver_max_lag_ms`` is the driver loop's worst lateness, the check on that.
``--verbose`` prints the shop's latency per journey step; ``BENCH_BOT_PROFILE=path`` writes
a cProfile of the shop bot's process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from bench._support import driver_gc_off, loop_lag, percentile, throwaway_database
from bot import texts
from bot.warmup import freeze_startup_objects
from core import catalogue, ledger
from core.clock import SystemClock
from core.db.engine import Database
from core.db.tables import metadata
from core.invariants import check_invariants
from core.providers.simulator import SimulatorProvider
from numbershop.emulator import ChatView, EmulatedBot, running_emulator

SHOP_TOKEN = "900001:bench-shop-bot"
ECHO_TOKEN = "900002:bench-echo-bot"
WAIT = 60.0
FIRST_USER = 10_000_000
CODE_DELAY_S = (1.5, 2.5)  # simulator: a code "arrives" this long after the rent
SHOP_STEPS = 12  # updates in a shop journey with one Check now (payment = 2 updates)


# --- the bots under test (run with --serve) ---------------------------------------------


def echo_bot(api_url: str, token: str, storage: Any = None) -> tuple[Any, Any]:
    """The echo bot (a Bot and its Dispatcher), the baseline both bot benchmarks measure
    against: text → the same text with one button; button → answerCallbackQuery (in the
    webhook's reply when served as a webhook, as the shop answers taps there)."""
    from aiogram import Bot, Dispatcher, F
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

    dp = Dispatcher(storage=storage)
    again = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="again", callback_data="again")]]
    )

    @dp.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(message.text or "", reply_markup=again)

    @dp.callback_query()
    async def pressed(query: CallbackQuery, webhook_reply: Any = None) -> None:
        if webhook_reply is not None:  # as the shop does in webhook mode: in the 200's body
            webhook_reply.answer(query.id)
        else:
            await query.answer()

    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url))), dp


async def serve_echo(api_url: str) -> None:
    bot, dp = echo_bot(api_url, ECHO_TOKEN)
    freeze_startup_objects()  # the same treatment as the shop bot
    stop = _stop_on_sigterm()
    cpu_start = time.process_time()
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=10))
    await stop.wait()
    _report_cpu(cpu_start)
    await dp.stop_polling()
    await polling


async def serve_shop(api_url: str, database_url: str, seed: int) -> None:
    from bot.app import build_app, build_bot
    from core.app import build_core
    from core.config import Settings

    settings = Settings(  # type: ignore[call-arg]  # _env_file is BaseSettings.__init__'s, not a field
        _env_file=None,
        DATABASE_URL=database_url,
        BOT_TOKEN=SHOP_TOKEN,
        TELEGRAM_API_URL=api_url,
        PROVIDERS=("simulator",),
        SIMULATOR_SEED=seed,
    )
    clock = SystemClock()
    sim = SimulatorProvider(seed=seed, clock=clock, code_delay_s=CODE_DELAY_S)
    core = build_core(settings, clock=clock, providers={"simulator": sim})
    app = build_app(core, build_bot(settings))
    freeze_startup_objects()  # as `numbershop bot run` does
    stop = _stop_on_sigterm()
    cpu_start = time.process_time()
    stop_reported = asyncio.create_task(_report_cpu_on(stop, cpu_start))
    try:
        await app.run(stop, polling_timeout=10)
    finally:
        await stop_reported
        await app.aclose()
        await core.aclose()


def _report_cpu(since: float) -> None:
    """Tell the driver (on stdout) how much CPU this process used while it was measured:
    from start-up done to the stop signal, so imports and shutdown are left out."""
    print(json.dumps({"cpu_s": time.process_time() - since}), flush=True)


async def _report_cpu_on(stop: asyncio.Event, since: float) -> None:
    await stop.wait()
    _report_cpu(since)


def _stop_on_sigterm() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


# --- simulated users --------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    tg: EmulatedBot
    update_ids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_s: float | None = None  # the bot process's CPU while measured, as it reported it
    calls_from: int = 0  # the bot's Bot API calls before this phase (one bot serves each round)
    driver_lag_ms: float = 0.0  # the driver's worst loop lateness: large = the driver was measured

    def __post_init__(self) -> None:
        self.calls_from = len(self.tg.calls)

    def api_calls(self) -> int:
        """Bot API calls made in this phase, long polls left out (their number depends on
        how updates happen to batch, not on what the bot does)."""
        return sum(1 for c in self.tg.calls[self.calls_from :] if c.method != "getUpdates")

    def cpu_ms_per_update(self) -> float | None:
        return self.cpu_s * 1000 / len(self.update_ids) if self.cpu_s and self.update_ids else None

    @functools.cached_property
    def latencies(self) -> list[float]:
        """Milliseconds from each update to the bot's first call in that chat (read once the
        round is over)."""
        out = []
        for update_id in self.update_ids:
            record = self.tg.update(update_id)
            reply = self.tg.first_reply(update_id)
            if reply is None:
                self.errors.append(f"update {update_id} ({record.kind}) got no reply")
                continue
            out.append((reply.started - record.created_at) * 1000)
        return out


class User:
    """One simulated person: acts, waits for the bot, pauses like a human."""

    def __init__(self, phase: Phase, user_id: int, rng: random.Random, think: tuple[float, float]) -> None:
        self.phase = phase
        self.tg = phase.tg
        self.id = user_id
        self.rng = rng
        self.think = think
        self.last_message_id = 0

    async def pause(self) -> None:
        await asyncio.sleep(self.rng.uniform(*self.think))

    async def say(self, text_: str) -> None:
        update_id = self.tg.send_text(self.id, text_, first_name=f"U{self.id}")
        self.phase.update_ids.append(update_id)
        await self.tg.wait_for_reply(update_id, WAIT)
        await self.pause()

    def button(self, prefix: str) -> tuple[int, str]:
        for msg in reversed(self.tg.chat(self.id).bot_messages()):
            for b in msg.buttons:
                if b.text.startswith(prefix) and b.callback_data:
                    return msg.message_id, b.callback_data
        raise LookupError(f"user {self.id}: no button {prefix!r}")

    async def press(self, prefix: str, *, index: int | None = None, pause: bool = True) -> str | None:
        if index is not None:  # on the message the previous press edited
            msg = self.tg.chat(self.id).message(self.last_message_id)
            message_id, data = msg.message_id, msg.buttons[index].callback_data
        else:
            message_id, data = self.button(prefix)
        self.last_message_id = message_id
        pressed = self.tg.press_button(self.id, message_id, data=data)
        self.phase.update_ids.append(pressed.update_id)
        answer = await self.tg.wait_for_callback_answer(pressed.query_id, WAIT)
        if pause:
            await self.pause()
        return answer.text

    async def pay(self) -> None:
        payment = await self.tg.pay_invoice(self.id, timeout=WAIT)
        if payment.status != "paid":
            raise RuntimeError(f"payment {payment.status}")
        assert payment.update_id is not None  # Payment sets it whenever the status is "paid"
        self.phase.update_ids += [payment.pre_checkout_update_id, payment.update_id]
        await self.tg.wait_for_reply(payment.update_id, WAIT)
        await self.pause()

    async def wait_chat(
        self, predicate: Callable[[ChatView], bool], what: str, timeout: float = WAIT
    ) -> None:
        """Wait on this chat's own change signal (a bot-wide wait would wake every user on
        every change and turn the driver, not the bot, into the bottleneck)."""
        deadline = time.monotonic() + timeout
        view = self.tg.chat(self.id)
        while not predicate(view):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"user {self.id}: no {what}")
            view = await self.tg.wait_for_change(self.id, view.version, remaining)


async def echo_journey(user: User, _: int) -> None:
    await user.say("/start")
    for i in range(SHOP_STEPS - 1):
        if i % 2:
            await user.say(f"hello {i}")
        else:
            await user.press("again")


async def shop_journey(user: User, i: int) -> None:
    cancel = i % 4 == 3
    await user.say("/start")
    await user.press("💰 Balance")
    await user.press("⭐ 250")
    await user.pay()
    await user.press("« Menu")
    await user.press("🛒 Buy number")
    await user.press("WhatsApp")
    await user.press("", index=0)  # the cheapest country
    order_message = user.button("✅ Buy for")[0]
    await user.press("✅ Buy for", pause=not cancel)
    # A slow rent is answered "working on it" and the edit follows: wait for the number.
    await user.wait_chat(lambda chat: "Number:" in (chat.message(order_message).text or ""), "order message")

    def order_text(chat: ChatView) -> str:
        return chat.message(order_message).text or ""

    if cancel:
        answer = await user.press("❌ Cancel & refund")
        if answer == texts.CANCEL_COMPLETED_INSTEAD:  # the code won the race (a slow tap under load)
            await user.wait_chat(lambda chat: "Completed" in order_text(chat), "completed order")
        elif answer != texts.WORKING and (not answer or "refunded" not in answer):
            raise RuntimeError(f"cancel answered {answer!r}")
        else:
            await user.wait_chat(lambda chat: "Cancelled" in order_text(chat), "cancelled order")
    else:
        for _ in range(8):
            if "Completed" in order_text(user.tg.chat(user.id)):
                break
            answer = await user.press("🔄 Check now")
            if answer == texts.WORKING:  # slow: the edit follows
                await user.wait_chat(
                    lambda chat: "Waiting" not in order_text(chat) or "Code:" in order_text(chat),
                    "checked order",
                )
        await user.wait_chat(lambda chat: any(t.startswith("📩") for t in chat.texts()), "code message")
    await user.say("/orders")


async def run_users(
    phase: Phase,
    users: int,
    journey: Callable[[User, int], Awaitable[None]],
    seed: int,
    think: tuple[float, float],
    ramp: float,
    first_user: int = FIRST_USER,
) -> float:
    started = time.perf_counter()

    async def one(i: int) -> None:
        rng = random.Random(f"{seed}:{phase.name}:{i}")
        await asyncio.sleep(ramp * i / max(1, users))
        user = User(phase, first_user + i, rng, think)
        try:
            await journey(user, i)
        except Exception as exc:
            phase.errors.append(f"user {user.id}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(i) for i in range(users)))
    return time.perf_counter() - started


async def run_phase(
    phase: Phase, journey: Callable[[User, int], Awaitable[None]], args: argparse.Namespace, first_user: int
) -> None:
    async with loop_lag() as worst:
        phase.seconds = await run_users(
            phase, args.users, journey, args.seed, (args.think_min, args.think_max), args.ramp, first_user
        )
    phase.driver_lag_ms = worst[0] * 1000


@contextlib.asynccontextmanager
async def bot_process(phase: Phase, *args: str) -> AsyncIterator[None]:
    """Start ``python -m bench.bot --serve …``; yield once it long-polls; stop it after and
    keep the CPU time it reports."""
    tg = phase.tg
    before = len(tg.calls)  # the bot may have been served by an earlier process
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once per phase, never waited on here
        [sys.executable, "-m", "bench.bot", "--serve", *args], stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + WAIT
        while not any(c.method == "getUpdates" for c in tg.calls[before:]):
            if proc.poll() is not None:
                raise RuntimeError(f"bot process {args[0]} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"bot process {args[0]} did not start polling")
            await asyncio.sleep(0.05)  # startup is outside the measurement
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = await asyncio.to_thread(proc.communicate)
        for line in (out or "").splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                phase.cpu_s = float(json.loads(line)["cpu_s"])


# --- the database -----------------------------------------------------------------------


async def prepare(db: Database, seed: int) -> None:
    clock = SystemClock()
    async with db.begin() as conn:
        await conn.run_sync(metadata.create_all)
    async with db.begin() as conn:
        await ledger.ensure_system_accounts(conn, clock.now())
        await catalogue.seed_reference_data(conn)
    await catalogue.sync_catalogue(db, SimulatorProvider(seed=seed, clock=clock), clock)


async def audit(db: Database) -> tuple[int, dict[str, int]]:
    ledger.forget_system_accounts()
    violations = await check_invariants(db, SystemClock().now(), 0)
    async with db.read() as conn:
        statuses: dict[str, int] = dict(
            (await conn.execute(text("SELECT status, count(*) FROM orders GROUP BY status"))).all()
        )
    return len(violations), statuses


# --- the run ----------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    rounds: list[tuple[Phase, Phase]] = []
    async with throwaway_database(args.db, args.url, "bench.bot") as db:
        await prepare(db, args.seed)
        async with running_emulator() as (emulator, base_url):
            for n in range(args.rounds):
                # New people each round, on the same schedule: rounds differ only by noise.
                first_user = FIRST_USER + n * args.users
                echo = Phase("echo", emulator.add_bot(ECHO_TOKEN))
                with driver_gc_off():
                    async with bot_process(echo, "echo", "--api-url", base_url):
                        await run_phase(echo, echo_journey, args, first_user)
                shop = Phase("shop", emulator.add_bot(SHOP_TOKEN))
                with driver_gc_off():
                    async with bot_process(
                        shop,
                        "shop",
                        "--api-url",
                        base_url,
                        "--database-url",
                        db.url,
                        "--seed",
                        str(args.seed),
                    ):
                        await run_phase(shop, shop_journey, args, first_user)
                rounds.append((echo, shop))
                report_round(n + 1, echo, shop)
                if args.verbose:
                    report_steps(shop)
        violations, statuses = await audit(db)

    errors = [e for echo, shop in rounds for e in echo.errors + shop.errors]
    for err in errors[:10]:
        print(f"error: {err}", file=sys.stderr)
    orders = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())) or "none"
    print(f"orders: {orders}; ledger violations: {violations}", file=sys.stderr)
    ratios = [r for r in (_ratio(echo, shop) for echo, shop in rounds) if r is not None]
    echo_ms = [v for echo, _ in rounds for v in echo.latencies]
    shop_ms = [v for _, shop in rounds for v in shop.latencies]
    shop_cpu = _cpu_ms([shop for _, shop in rounds])
    echo_cpu = _cpu_ms([echo for echo, _ in rounds])
    return {
        "users": args.users,
        "db": args.db,
        "rounds": args.rounds,
        "ratio": round(statistics.median(ratios), 2) if ratios else None,
        "round_ratios": [round(r, 2) for r in ratios],
        "shop_p50_ms": round(percentile(shop_ms, 0.5), 2),
        "shop_p99_ms": round(percentile(shop_ms, 0.99), 2),
        "echo_p50_ms": round(percentile(echo_ms, 0.5), 2),
        "echo_p99_ms": round(percentile(echo_ms, 0.99), 2),
        "shop_updates": len(shop_ms),
        "echo_updates": len(echo_ms),
        "shop_cpu_ms_per_update": shop_cpu,
        "echo_cpu_ms_per_update": echo_cpu,
        "cpu_ratio": round(shop_cpu / echo_cpu, 2) if shop_cpu and echo_cpu else None,
        "driver_max_lag_ms": round(max(p.driver_lag_ms for r in rounds for p in r), 1),
        "errors": len(errors),
        "ledger_violations": violations,
    }


def _cpu_ms(phases: list[Phase]) -> float | None:
    """CPU per update over all rounds: steadier than p99 on a shared machine, and the cause
    of most of the shop's tail (a busier loop queues more)."""
    if any(p.cpu_s is None for p in phases):
        return None
    updates = sum(len(p.update_ids) for p in phases)
    return round(sum(p.cpu_s or 0.0 for p in phases) * 1000 / updates, 2) if updates else None


def _ratio(echo: Phase, shop: Phase) -> float | None:
    echo_p99 = percentile(echo.latencies, 0.99)
    return percentile(shop.latencies, 0.99) / echo_p99 if echo_p99 else None


def report_round(n: int, echo: Phase, shop: Phase) -> None:
    for phase in (echo, shop):
        values = phase.latencies
        print(
            f"round {n} {phase.name}: {len(values)} updates in {phase.seconds:.1f}s, "
            f"p50 {percentile(values, 0.5):.1f} ms, p99 {percentile(values, 0.99):.1f} ms, "
            f"max {max(values, default=0):.1f} ms",
            file=sys.stderr,
        )
        cpu = phase.cpu_ms_per_update()
        print(
            f"round {n} {phase.name}: {phase.api_calls() / max(1, len(phase.update_ids)):.2f} "
            f"Bot API calls per update, CPU {f'{cpu:.2f} ms' if cpu else 'n/a'} per update, "
            f"driver loop late by at most {phase.driver_lag_ms:.1f} ms",
            file=sys.stderr,
        )
    ratio = _ratio(echo, shop)
    print(f"round {n} ratio: {ratio:.2f}" if ratio else f"round {n} ratio: n/a", file=sys.stderr)


def _step(phase: Phase, update_id: int) -> str:
    """A short name for the journey step an update belongs to (ids left out)."""
    rec = phase.tg.update(update_id)
    body = rec.payload.get(rec.kind, {})
    if rec.kind == "callback_query":
        prefix, _, rest = str(body.get("data", "")).partition(":")
        return f"button {prefix}:{rest.split(':')[0]}" if prefix in ("m", "o") else f"button {prefix}"
    if rec.kind == "message":
        return "text " + (body.get("text") or "(payment)").split()[0]
    return rec.kind


def report_steps(phase: Phase) -> None:
    """Per-step latencies, and when the slowest updates happened (clusters mean stalls)."""
    by_step: dict[str, list[float]] = {}
    timed = []
    for u in phase.update_ids:
        reply = phase.tg.first_reply(u)
        if reply is not None:
            ms = (reply.started - phase.tg.update(u).created_at) * 1000
            timed.append((ms, u))
            by_step.setdefault(_step(phase, u), []).append(ms)
    t0 = min(phase.tg.update(u).created_at for u in phase.update_ids)
    slowest = sorted(u for _, u in sorted(timed)[-25:])
    print(
        "slowest 25 at (s into the run): "
        + ", ".join(f"{phase.tg.update(u).created_at - t0:.1f}" for u in slowest),
        file=sys.stderr,
    )
    for step, values in sorted(by_step.items(), key=lambda kv: -percentile(kv[1], 0.99)):
        print(
            f"step {step:<22} n={len(values):4d} p50 {percentile(values, 0.5):6.1f} ms "
            f"p99 {percentile(values, 0.99):6.1f} ms",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bot", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--url", help="PostgreSQL server URL (default NUMBERSHOP_TEST_POSTGRES_URL)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="echo-then-shop rounds; the ratio is the median of the rounds' ratios",
    )
    parser.add_argument("--think-min", type=float, default=1.0, help="seconds between a user's taps")
    parser.add_argument("--think-max", type=float, default=3.0)
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds over which users arrive")
    parser.add_argument("--verbose", action="store_true", help="shop latency per journey step")
    parser.add_argument("--serve", choices=("echo", "shop"), help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    from bench import capacity  # webhook mode's capacity search lives there

    capacity.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.webhook:
        capacity_result = asyncio.run(capacity.main_async(args))
        print(json.dumps(capacity_result))
        return 0
    if args.serve:
        logging.basicConfig(level=logging.WARNING)
        if args.serve == "echo":
            asyncio.run(serve_echo(args.api_url))
        elif os.environ.get("BENCH_BOT_PROFILE"):  # where to write a cProfile of the shop bot
            import cProfile

            cProfile.runctx(
                "asyncio.run(serve_shop(args.api_url, args.database_url, args.seed))",
                globals(),
                locals(),
                os.environ["BENCH_BOT_PROFILE"],
            )
        else:
            asyncio.run(serve_shop(args.api_url, args.database_url, args.seed))
        return 0
    result = asyncio.run(main_async(args))
    print(json.dumps(result))
    return 0 if not result["errors"] and not result["ledger_violations"] else 1


if __name__ == "__main__":
    sys.exit(main())
