"""Capacity in webhook mode: the highest steady arrival rate at which the p99 first reply
stays within 250 ms, for the echo bot, the shop on one worker and the shop on N workers.

    python -m bench.bot --webhook --workers 2 --db postgres [--duration 20] [--start-rate 2]

(``bench.bot`` hands ``--webhook`` runs to this module.) Everything real, as deployed: the
shop's workers are ``numbershop bot run --webhook`` processes sharing one port
(SO_REUSEPORT) over PostgreSQL and Redis; the provider is the simulator's handler_api server
and Telegram is the emulator, both in this (the driver's) process, which POSTs every update
to the workers over up to ``max_connections`` connections, as Telegram does. The echo bot is
a minimal aiogram dispatcher behind the same ``bot.webhook.WebhookServer``.

A trial starts simulated people at a steady rate for ``--duration`` seconds; each goes
through the same journey as ``bench.bot`` (the echo bot gets as many updates, alternating
texts and taps), pausing ``--think-min``…``--think-max`` seconds between steps. The rate is
counted in updates per second (people per second × updates per journey). Latency of one
update = from the emulator creating it to the bot's first Bot API call in that chat (a call
carried in a webhook's reply counts when the reply arrives). The search doubles the rate
until p99 passes 250 ms (or a journey fails), then bisects ``--bisect`` times (default 3, to
an eighth of that rate) between the last rate that held and the first that did not:
capacity is the highest rate that held. CPU per update is each bot's processes' CPU
(``/proc``) over a trial at a rate that held, divided by that trial's updates.

The last line is one JSON object with each capacity, ``capacity_ratio_1w`` (shop on one
worker ÷ echo), ``scaling_2w`` (shop on N workers ÷ one) and the CPU per update of each.

Between the echo bot and the shop it measures the *floor*: the echo bot with the shop's
per-update bookkeeping and nothing else (the update log read before and recorded after each
update in the database, conversation state and the rate limit in Redis, as ``bot.app``
wires them). ``floor_ratio`` (floor ÷ echo) is the highest ``capacity_ratio_1w`` any shop
that keeps those promises could reach here, whatever its handlers do.

``--burst 200 --ramp 5`` measures the burst case instead: 200 people arriving within 5 s,
once per configuration, with the p99 of each (``--verbose`` prints the shop's p99 per
journey step, which says where the time goes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._support import percentile, throwaway_database
from bench.bot import SHOP_STEPS, Phase, User, echo_bot, echo_journey, report_steps, shop_journey
from core.clock import SystemClock
from core.providers.simulator import SimulatorProvider
from core.providers.simulator_http import start_server
from numbershop.emulator import EmulatedBot, running_emulator

SHOP_TOKEN = "900011:bench-capacity-shop"
ECHO_TOKEN = "900012:bench-capacity-echo"
FLOOR_TOKEN = "900013:bench-capacity-floor"
SECRET = "bench-capacity_secret"
PUBLIC_URL = "https://shop.example/telegram"
SIM_KEY = "bench-capacity-key"
TARGET_P99_MS = 250.0
CODE_DELAY_S = (1.5, 2.5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / tick, sum(fields) / tick


def _pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """User + system CPU of each of these processes so far (Linux ``/proc``; gone ones left out)."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    return cpu


def _cpu_seconds(pids: list[int]) -> float:
    return sum(_cpu_by_pid(pids).values())


def _cpu_since(before: dict[int, float], pids: list[int]) -> float:
    """CPU these processes used since ``before``: a process started since counts whole, one
    that exited meanwhile is left out (its last figures cannot be read any more)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in _cpu_by_pid(pids).items())


# --- the echo bot, served as a webhook (run with --serve-echo) ------------------------------


async def serve_echo(
    api_url: str, port: int, floor_db: str | None = None, redis_url: str | None = None
) -> None:
    """The echo bot as a webhook; with ``floor_db``, wrapped in the bookkeeping every shop
    update pays before any handler runs (see ``_add_floor``)."""
    from bot.warmup import freeze_startup_objects
    from bot.webhook import WebhookConfig, WebhookServer

    if floor_db:
        from bot.fsm_storage import make_storage

        bot, dp = echo_bot(api_url, FLOOR_TOKEN, make_storage(redis_url))
        db = _add_floor(dp, floor_db, redis_url)
    else:
        bot, dp = echo_bot(api_url, ECHO_TOKEN)
        db = None
    server = WebhookServer(
        bot, dp, WebhookConfig(url=f"http://127.0.0.1:{port}/hook", secret=SECRET, port=port)
    )
    await server.start()
    await server.register()
    freeze_startup_objects()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    await bot.session.close()
    await dp.storage.close()
    if db is not None:
        await db.dispose()


def _add_floor(dp: Any, database_url: str, redis_url: str | None) -> Any:
    """The shop's per-update bookkeeping on the echo bot, as ``bot.app.build_app`` wires it:
    the update log on the database (read before, record after), conversation state in Redis
    and the per-user rate limit in Redis. What this bot costs above the echo bot is the
    floor under any shop that keeps those promises, before it does any work of its own."""
    from bot.middlewares.dedupe import UpdateDedupe, UpdateLog
    from bot.middlewares.rate_limit import RATE_BURST, RATE_PER_SECOND, RateLimit, make_bucket
    from core.db.engine import Database

    db = Database(database_url)
    dp.update.outer_middleware(UpdateDedupe(UpdateLog(db, SystemClock())))
    limit = RateLimit(make_bucket(redis_url, RATE_PER_SECOND, RATE_BURST))
    dp.message.outer_middleware(limit)
    dp.callback_query.outer_middleware(limit)
    return db


# --- the bots under test, as processes ------------------------------------------------------


@dataclass
class Bots:
    """One configuration under test: its processes and how to start them."""

    name: str
    tg: EmulatedBot
    journey: Callable[[User, int], Awaitable[None]]
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.returncode is None]

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _spawn(argv: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(sys.executable, *argv, env=env, stdout=out, stderr=out)


async def _registered(tg: EmulatedBot, count: int) -> None:
    await tg.wait_until(
        lambda: sum(c.method == "setWebhook" and c.ok for c in tg.calls) >= count, 120, "setWebhook"
    )


# --- one trial at one rate -----------------------------------------------------------------


@dataclass
class Trial:
    rate: float  # updates per second
    p99_ms: float
    updates: int
    errors: int
    cpu_ms_per_update: float  # the bot's processes
    # Where the rest of the machine's time went, per update: this driver (the emulator, the
    # simulated people, the provider) and PostgreSQL; and how busy all cores were.
    driver_cpu_ms_per_update: float = 0.0
    postgres_cpu_ms_per_update: float = 0.0
    machine_busy: float = 0.0  # 0..1 of all cores

    @property
    def held(self) -> bool:
        return self.errors == 0 and self.updates > 0 and self.p99_ms <= TARGET_P99_MS


async def trial(
    bots: Bots, rate: float, args: argparse.Namespace, first_user: int, *, burst: int = 0
) -> Trial:
    """People arriving steadily at ``rate`` updates/s for ``--duration`` s; or, with
    ``burst``, that many people arriving within ``--ramp`` s (the burst case)."""
    phase = Phase(bots.name, bots.tg)
    if burst:
        people, spacing = burst, args.ramp / burst
        rate = burst * SHOP_STEPS / max(args.ramp, 0.001)
    else:
        people = max(1, round(rate * args.duration / SHOP_STEPS))
        spacing = args.duration / people
    cpu_before = _cpu_seconds(bots.pids())
    pg_before, driver_before, (busy_before, total_before) = (
        _cpu_by_pid(_pids_named("postgres")),
        time.process_time(),
        _machine(),
    )

    async def one(i: int) -> None:
        await asyncio.sleep(i * spacing)
        user = User(
            phase, first_user + i, random.Random(f"{args.seed}:{rate}:{i}"), (args.think_min, args.think_max)
        )
        try:
            await bots.journey(user, i)
        except Exception as exc:
            phase.errors.append(f"user {user.id}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(i) for i in range(people)))
    cpu = _cpu_seconds(bots.pids()) - cpu_before
    busy_after, total_after = _machine()
    per = 1000 / max(1, len(phase.update_ids))
    latencies = phase.latencies
    result = Trial(
        rate=rate,
        p99_ms=round(percentile(latencies, 0.99), 1),
        updates=len(phase.update_ids),
        errors=len(phase.errors),
        cpu_ms_per_update=round(cpu * per, 2),
        driver_cpu_ms_per_update=round((time.process_time() - driver_before) * per, 2),
        postgres_cpu_ms_per_update=round(_cpu_since(pg_before, _pids_named("postgres")) * per, 2),
        machine_busy=round((busy_after - busy_before) / max(0.001, total_after - total_before), 2),
    )
    for err in phase.errors[:3]:
        print(f"  error: {err}", file=sys.stderr)
    if burst and args.verbose:
        report_steps(phase)  # where the time goes, step by step
    print(
        f"{bots.name}: {rate:.1f} updates/s → p99 {result.p99_ms} ms over {result.updates} updates, "
        f"{result.errors} errors, CPU per update: bot {result.cpu_ms_per_update} ms, driver "
        f"{result.driver_cpu_ms_per_update} ms, PostgreSQL {result.postgres_cpu_ms_per_update} ms; "
        f"machine {result.machine_busy:.0%} busy ({'held' if result.held else 'missed'})",
        file=sys.stderr,
    )
    return result


async def capacity(bots: Bots, args: argparse.Namespace, first_user: int) -> tuple[float, Trial | None]:
    """Double, then bisect ``--bisect`` times; the highest rate that held and its trial. With
    ``--burst N``, one burst trial instead (its p99 is in the trial)."""
    if args.burst:
        result = await trial(bots, 0.0, args, first_user, burst=args.burst)
        return result.p99_ms, result
    rate, best, worst = args.start_rate, None, None
    users = first_user
    while worst is None and rate <= args.max_rate:
        result = await trial(bots, rate, args, users)
        users += 10_000
        if result.held:
            best, rate = result, rate * 2
        else:
            worst = rate
    if best is not None and worst is not None:
        low, high = best.rate, worst
        for _ in range(args.bisect):
            mid = (low + high) / 2
            result = await trial(bots, mid, args, users)
            users += 10_000
            if result.held:
                best, low = result, mid
            else:
                high = mid
    return (best.rate if best else 0.0), best


# --- the run -------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    redis_url = args.redis or os.environ.get("NUMBERSHOP_TEST_REDIS_URL")
    if args.workers > 1 and not redis_url:
        raise SystemExit("--workers > 1 needs Redis: pass --redis URL or set NUMBERSHOP_TEST_REDIS_URL")
    logs = Path(args.logs)
    os.makedirs(logs, exist_ok=True)
    results: dict[str, object] = {"db": args.db, "workers": args.workers, "target_p99_ms": TARGET_P99_MS}
    clock = SystemClock()
    sim = SimulatorProvider(seed=args.seed, clock=clock, code_delay_s=CODE_DELAY_S)
    provider = await start_server(sim, api_key=SIM_KEY, port=0)
    try:
        async with running_emulator() as (emulator, base_url):
            # The echo bot.
            echo = Bots("echo", emulator.add_bot(ECHO_TOKEN), echo_journey)
            port = _free_port()
            echo.procs.append(
                await _spawn(
                    ["-m", "bench.capacity", "--serve-echo", "--api-url", base_url, "--port", str(port)],
                    dict(os.environ),
                    logs / "echo.log",
                )
            )
            await _registered(echo.tg, 1)
            try:
                echo_cap, echo_trial = await capacity(echo, args, 10_000_000)
            finally:
                await echo.stop()

            floor_cap, floor_trial = 0.0, None
            if not args.burst:
                floor_cap, floor_trial = await _measure_floor(emulator, base_url, redis_url, args, logs)

            shop_caps: dict[int, tuple[float, Trial | None]] = {}
            for workers in sorted({1, args.workers}):
                async with throwaway_database(args.db, args.url, "bench.capacity") as db:
                    shop = Bots(f"shop-{workers}w", emulator.add_bot(_token(workers)), shop_journey)
                    port = _free_port()
                    shop.tg.terminate_tls(PUBLIC_URL, f"http://127.0.0.1:{port}/telegram")
                    env = _shop_env(db.url, redis_url, base_url, port, provider.url, workers)
                    upgrade = await _spawn(["-m", "numbershop", "db", "upgrade"], env, logs / "upgrade.log")
                    if await upgrade.wait() != 0:
                        raise SystemExit(f"db upgrade failed: see {logs / 'upgrade.log'}")
                    for n in range(workers):
                        shop.procs.append(
                            await _spawn(
                                ["-m", "numbershop", "bot", "run", "--webhook"],
                                env,
                                logs / f"shop-{workers}w-{n}.log",
                            )
                        )
                    scheduler = await _spawn(
                        ["-m", "numbershop", "scheduler", "run"], env, logs / "scheduler.log"
                    )
                    try:
                        await _registered(shop.tg, workers)
                        shop_caps[workers] = await capacity(shop, args, 20_000_000 + workers * 1_000_000)
                    finally:
                        await shop.stop()
                        scheduler.send_signal(signal.SIGTERM)
                        await scheduler.wait()
    finally:
        await provider.stop()

    one_cap, one_trial = shop_caps[1]
    n_cap, n_trial = shop_caps[args.workers]
    if args.burst:
        results.update(
            burst_people=args.burst,
            ramp_s=args.ramp,
            echo_p99_ms=echo_cap,
            shop_p99_ms_1w=one_cap,
            shop_p99_ms_nw=n_cap,
            errors=sum(t.errors for t in (echo_trial, one_trial, n_trial) if t),
            echo_cpu_ms_per_update=echo_trial.cpu_ms_per_update if echo_trial else None,
            shop_cpu_ms_per_update_1w=one_trial.cpu_ms_per_update if one_trial else None,
            shop_cpu_ms_per_update_nw=n_trial.cpu_ms_per_update if n_trial else None,
            where=_where(echo=echo_trial, shop_1w=one_trial, shop_nw=n_trial),
        )
        return results
    results.update(
        echo_capacity=echo_cap,
        floor_capacity=floor_cap,
        floor_ratio=round(floor_cap / echo_cap, 2) if echo_cap else None,
        floor_cpu_ms_per_update=floor_trial.cpu_ms_per_update if floor_trial else None,
        shop_capacity_1w=one_cap,
        shop_capacity_nw=n_cap,
        capacity_ratio_1w=round(one_cap / echo_cap, 2) if echo_cap else None,
        scaling_2w=round(n_cap / one_cap, 2) if one_cap and args.workers > 1 else None,
        echo_cpu_ms_per_update=echo_trial.cpu_ms_per_update if echo_trial else None,
        shop_cpu_ms_per_update_1w=one_trial.cpu_ms_per_update if one_trial else None,
        shop_cpu_ms_per_update_nw=n_trial.cpu_ms_per_update if n_trial else None,
        at_capacity=_where(echo=echo_trial, floor=floor_trial, shop_1w=one_trial, shop_nw=n_trial),
        cpu_ratio_1w=(
            round(one_trial.cpu_ms_per_update / echo_trial.cpu_ms_per_update, 2)
            if one_trial and echo_trial and echo_trial.cpu_ms_per_update
            else None
        ),
    )
    return results


async def _measure_floor(
    emulator: Any, base_url: str, redis_url: str | None, args: argparse.Namespace, logs: Path
) -> tuple[float, Trial | None]:
    """The echo bot with the shop's per-update bookkeeping (``_add_floor``): the highest
    ``capacity_ratio_1w`` any shop keeping those promises could reach on this machine."""
    from core.db.tables import processed_updates

    async with throwaway_database(args.db, args.url, "bench.floor") as db:
        async with db.begin() as conn:
            await conn.run_sync(processed_updates.metadata.create_all, tables=[processed_updates])
        floor = Bots("floor", emulator.add_bot(FLOOR_TOKEN), echo_journey)
        port = _free_port()
        argv = ["-m", "bench.capacity", "--serve-echo", "--api-url", base_url, "--port", str(port)]
        argv += ["--floor-db", db.url] + (["--redis-url", redis_url] if redis_url else [])
        floor.procs.append(await _spawn(argv, dict(os.environ), logs / "floor.log"))
        await _registered(floor.tg, 1)
        try:
            return await capacity(floor, args, 15_000_000)
        finally:
            await floor.stop()


def _where(**trials: Trial | None) -> dict[str, dict[str, float]]:
    """Per update, where the machine's CPU went in each configuration's measured trial."""
    return {
        name: {
            "bot_cpu_ms": t.cpu_ms_per_update,
            "driver_cpu_ms": t.driver_cpu_ms_per_update,
            "postgres_cpu_ms": t.postgres_cpu_ms_per_update,
            "machine_busy": t.machine_busy,
        }
        for name, t in trials.items()
        if t is not None
    }


def _token(workers: int) -> str:
    return f"{900020 + workers}:bench-capacity-shop"


def _shop_env(
    database_url: str, redis_url: str | None, api_url: str, port: int, provider_url: str, workers: int
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBERSHOP_", "SMSACTIVATE_"))}
    env.update(
        DATABASE_URL=database_url,
        BOT_TOKEN=_token(workers),
        TELEGRAM_API_URL=api_url,
        WEBHOOK_URL=PUBLIC_URL,
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_PORT=str(port),
        PROVIDERS="sim",
        SIM_KIND="handlerapi",
        SIM_URL=provider_url,
        SIM_API_KEY=SIM_KEY,
        SIM_CURRENCY="USD",
        SIM_COST_RATE="1",
        SHOP_CURRENCY="USD",
        NUMBERSHOP_BOT_WORKER="1",  # SO_REUSEPORT, as --workers does
        LOG_LEVEL="WARNING",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--webhook", action="store_true", help="measure capacity in webhook mode (this module)"
    )
    parser.add_argument("--workers", type=int, default=2, help="webhook mode: shop workers in the second run")
    parser.add_argument(
        "--duration", type=float, default=20.0, help="webhook mode: seconds of arrivals per trial"
    )
    parser.add_argument("--bisect", type=int, default=3, help="webhook mode: bisection steps after doubling")
    parser.add_argument("--start-rate", type=float, default=2.0, help="webhook mode: first rate, updates/s")
    parser.add_argument("--max-rate", type=float, default=512.0, help="webhook mode: stop doubling here")
    parser.add_argument("--redis", help="webhook mode: Redis URL (default NUMBERSHOP_TEST_REDIS_URL)")
    parser.add_argument("--logs", default="/tmp/bench-capacity", help="webhook mode: the processes' logs")
    parser.add_argument(
        "--burst",
        type=int,
        default=0,
        help="webhook mode: instead of capacity, N people arriving within --ramp s",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity")
    parser.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--api-url")
    parser.add_argument("--port", type=int)
    parser.add_argument("--floor-db")
    parser.add_argument("--redis-url")
    args = parser.parse_args(argv)
    if args.serve_echo:
        asyncio.run(serve_echo(args.api_url, args.port, args.floor_db, args.redis_url))
        return 0
    parser.error("run it as: python -m bench.bot --webhook [--workers N] [--db postgres]")
    return 2


if __name__ == "__main__":
    sys.exit(main())
