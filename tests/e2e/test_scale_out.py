"""The shop scaled out, as ``deploy/`` runs it: two webhook workers on one port, two
schedulers and the dashboard, each its own process, over PostgreSQL and Redis, with the
provider reached over HTTP (the simulator's handler_api server) so every process sees the
same numbers.

100 people go through full journeys (top up with Stars, buy, then wait for the code or
cancel) delivered by the emulator's webhook. Mid-run one worker is frozen (SIGSTOP) until
it holds an update, then killed with SIGKILL — updates it was handling are lost mid-flight —
and started again. The promise is checked
afterwards from the books, not from the screens: every update was handled, every person
paid once, holds ended in a capture or a refund, and the ledger check passes.

Skipped (with the reason printed) without both NUMBERSHOP_TEST_POSTGRES_URL and
NUMBERSHOP_TEST_REDIS_URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from bench.bot import Phase, User
from core.clock import SystemClock
from core.db.engine import Database
from core.invariants import check_invariants
from core.providers.simulator import SimulatorProvider
from core.providers.simulator_http import start_server
from numbershop.emulator import ChatView, EmulatedBot, running_emulator
from tests.conftest import PG_ENV, _pg_url, scratch_postgres_database

REDIS_ENV = "NUMBERSHOP_TEST_REDIS_URL"
TOKEN = "777321:numbershop-scale-out"
SECRET = "scale-out_secret"
PUBLIC_URL = "https://shop.example/telegram"
SIM_KEY = "scale-out-sim-key"
USERS = 100
KILL_AFTER_UPDATES = 450  # about a third of the run's updates


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def backends() -> Iterator[tuple[str, str]]:
    """A private PostgreSQL database and a Redis URL; skipped without both."""
    base, redis_url = _pg_url(), os.environ.get(REDIS_ENV)
    if not base or not redis_url:
        print(f"skipped: set {PG_ENV} and {REDIS_ENV} to run the scale-out test")
        pytest.skip(f"scale-out test skipped: set {PG_ENV} and {REDIS_ENV}")
    with scratch_postgres_database(base, "numbershop_scale") as url:
        yield url, redis_url


class Processes:
    """The shop's processes, each logging to its own file (a full pipe would stall it)."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.running: dict[str, asyncio.subprocess.Process] = {}
        self.started = 0

    async def start(self, name: str, *argv: str, **extra: str) -> asyncio.subprocess.Process:
        self.started += 1
        log = (self.cwd / f"{name}.{self.started}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "numbershop",
            *argv,
            cwd=self.cwd,
            env={**self.env, **extra},
            stdout=log,
            stderr=log,
        )
        log.close()  # the child holds its own descriptor
        self.running[name] = proc
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.cwd.glob("*.log")))

    async def stop_all(self) -> None:
        for proc in self.running.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.running.values():
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def shop(
    tmp_path: Path, database_url: str, redis_url: str
) -> AsyncIterator[tuple[Processes, EmulatedBot, int]]:
    clock = SystemClock()
    # Codes come 3-5 s after the rent: after a cancelling user's tap (the journey cancels at
    # once), before a waiting user gives up.
    sim = SimulatorProvider(seed=11, clock=clock, code_delay_s=(3.0, 5.0))
    provider = await start_server(sim, api_key=SIM_KEY, port=0)
    port, admin_port = _free_port(), _free_port()
    try:
        async with running_emulator() as (emulator, base_url):
            tg = emulator.add_bot(TOKEN)
            tg.terminate_tls(PUBLIC_URL, f"http://127.0.0.1:{port}/telegram")
            env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBERSHOP_", "SMSACTIVATE_"))}
            env.update(
                DATABASE_URL=database_url,
                REDIS_URL=redis_url,
                BOT_TOKEN=TOKEN,
                TELEGRAM_API_URL=base_url,
                WEBHOOK_URL=PUBLIC_URL,
                WEBHOOK_SECRET=SECRET,
                WEBHOOK_PORT=str(port),
                PROVIDERS="sim",
                SIM_KIND="handlerapi",
                SIM_URL=provider.url,
                SIM_API_KEY=SIM_KEY,
                SIM_CURRENCY="USD",
                SIM_COST_RATE="1",
                SHOP_CURRENCY="USD",
                # A Buy cut off by the SIGKILL leaves its order "reserving"; the recovery job
                # settles it after this long (120 s by default, longer than a journey waits).
                RECOVERY_AFTER_SECONDS="30",
                ADMIN_SECRET_KEY="scale-out-dashboard-secret-key-0123456789",
                NUMBERSHOP_BOT_WORKER="1",  # listen with SO_REUSEPORT, as --workers does
            )
            procs = Processes(tmp_path, env)
            upgrade = await procs.start("upgrade", "db", "upgrade")
            assert await upgrade.wait() == 0, procs.logs()
            try:
                for name in ("worker-a", "worker-b"):
                    await procs.start(name, "bot", "run", "--webhook")
                for name in ("scheduler-a", "scheduler-b"):
                    await procs.start(name, "scheduler", "run")
                await procs.start("dashboard", "admin", "run", "--port", str(admin_port))
                try:
                    await tg.wait_until(
                        lambda: sum(c.method == "setWebhook" and c.ok for c in tg.calls) >= 2,
                        120,
                        "both workers' setWebhook",
                    )
                except TimeoutError as exc:
                    raise AssertionError(f"{exc}\n{procs.logs()}") from None
                yield procs, tg, admin_port
            finally:
                await procs.stop_all()
    finally:
        await provider.stop()


async def test_two_workers_two_schedulers_and_a_sigkill_lose_nothing_and_charge_once(
    tmp_path: Path, backends: tuple[str, str]
) -> None:
    database_url, redis_url = backends
    async with shop(tmp_path, database_url, redis_url) as (procs, tg, admin_port):
        phase = Phase("scale-out", tg)
        killed: dict[str, float] = {}

        def held_by_the_frozen_worker() -> bool:
            """An update delivered half a second ago and still unconfirmed: worker-b answers
            in milliseconds, so the frozen worker-a holds it."""
            now = time.perf_counter()
            for update_id in phase.update_ids[-200:]:
                record = tg.update(update_id)
                if record.confirmed_at is None and record.delivered_at and now - record.delivered_at > 0.5:
                    return True
            return False

        async def kill_one_worker_mid_run() -> None:
            while len(phase.update_ids) < KILL_AFTER_UPDATES:
                await asyncio.sleep(0.05)
            # Frozen first, until it holds an update unfinished: a kill landing between two
            # updates would prove nothing. Then SIGKILL: no clean shutdown.
            worker = procs.running["worker-a"]
            worker.send_signal(signal.SIGSTOP)
            deadline = time.monotonic() + 30.0
            while not held_by_the_frozen_worker() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            worker.kill()
            await worker.wait()
            killed["at"] = time.monotonic()
            await asyncio.sleep(1.0)  # worker-b alone meanwhile; then the restart
            await procs.start("worker-a", "bot", "run", "--webhook")

        async def one(i: int) -> None:
            await asyncio.sleep(10.0 * i / USERS)  # arrivals spread over 10 s
            user = User(phase, 50_000_000 + i, random.Random(f"scale:{i}"), (0.05, 0.3))
            try:
                await journey(user, cancel=i % 4 == 3)
            except Exception as exc:
                screens = " | ".join((t or "")[:120] for t in tg.chat(user.id).texts()[-4:])
                mine = [tg.update(u) for u in phase.update_ids if tg.update(u).chat_id == user.id]
                trail = ", ".join(f"{r.update_id}:{r.kind}x{r.deliveries}" for r in mine[-4:])
                raise AssertionError(f"{exc!r}; last screens: {screens}; last updates: {trail}") from exc

        killer = asyncio.create_task(kill_one_worker_mid_run())
        results = await asyncio.gather(*(one(i) for i in range(USERS)), return_exceptions=True)
        await killer

        failed = [f"user {i}: {r!r}" for i, r in enumerate(results) if isinstance(r, BaseException)]
        assert not failed, "\n".join(failed)
        assert "at" in killed, "the worker was never killed: the run was too short"
        redelivered = [u for u in phase.update_ids if tg.update(u).deliveries > 1]
        assert redelivered or tg.api_webhook_info().get("last_error_date"), "the kill interrupted nothing"

        async with httpx.AsyncClient() as http:
            health = await http.get(f"http://127.0.0.1:{admin_port}/healthz", timeout=10)
        assert health.status_code == 200, health.text

        db = Database(database_url)
        try:
            await _wait_for_quiet_books(db)
            async with db.read() as conn:
                handled = set((await conn.execute(text("SELECT update_id FROM processed_updates"))).scalars())
                topups = (
                    await conn.execute(
                        text(
                            "SELECT credit_account_id, count(*) FROM transfers WHERE code = 'topup' "
                            "GROUP BY credit_account_id"
                        )
                    )
                ).all()
                orders = (
                    await conn.execute(text("SELECT user_id, count(*) FROM orders GROUP BY user_id"))
                ).all()
                open_holds = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM transfers h WHERE h.kind = 'pending' AND NOT EXISTS "
                            "(SELECT 1 FROM transfers r WHERE r.pending_id = h.id)"
                        )
                    )
                ).scalar_one()
            violations = await check_invariants(db, SystemClock().now(), 0)
        finally:
            await db.dispose()

    missing = [u for u in phase.update_ids if u not in handled and not tg.update(u).dropped]
    assert not missing, f"{len(missing)} updates never handled: {missing[:10]}"
    assert not [u for u in phase.update_ids if tg.update(u).dropped], "an update was given up on"
    assert len(topups) == USERS and all(n == 1 for _, n in topups), topups  # paid once each
    assert len(orders) == USERS and all(n == 1 for _, n in orders), orders  # one order each
    assert open_holds == 0
    assert violations == [], violations


async def journey(user: User, *, cancel: bool) -> None:
    """Top up, buy WhatsApp in the cheapest country, then cancel at once or wait for the code.

    A cancel may lose the race to a code that arrived first (one or the other, never both),
    and a rent cut off by the kill may end "not charged" once recovery settles it: each is a
    right answer, and the books below tell which happened."""
    await user.say("/start")
    await tap(user, "💰 Balance", then="⭐ 250")
    await tap(user, "⭐ 250", then=None)
    await user.pay()
    await tap(user, "« Menu", then="🛒 Buy number")
    await tap(user, "🛒 Buy number", then="WhatsApp")
    await tap(user, "WhatsApp", then=None)
    await user.wait_chat(lambda chat: any("choose a country" in t for t in chat.texts()), "the countries")
    await user.press("", index=0)  # the cheapest country
    await user.wait_chat(lambda chat: _has_button(chat, "✅ Buy for"), "the confirm screen")
    order_message = user.button("✅ Buy for")[0]
    await user.press("✅ Buy for", pause=not cancel)

    def order_text(chat: ChatView) -> str:
        return chat.message(order_message).text or ""

    await user.wait_chat(
        lambda chat: "Number:" in order_text(chat) or "not charged" in order_text(chat), "the number"
    )
    if "not charged" in order_text(user.tg.chat(user.id)):
        pass  # the rent failed or was given up on by recovery: released, nothing to do
    elif cancel:
        await user.press("❌ Cancel & refund")
        await user.wait_chat(lambda chat: "Waiting" not in order_text(chat), "a closed order")
    else:
        await user.wait_chat(lambda chat: any(t.startswith("📩") for t in chat.texts()), "the code")
    await user.say("/orders")


def _has_button(chat: ChatView, prefix: str) -> bool:
    return any(b.text.startswith(prefix) for m in chat.bot_messages() for b in m.buttons)


async def tap(user: User, label: str, *, then: str | None) -> None:
    """Press a button, then wait for the screen it leads to: under load the callback is
    answered ("working on it") before the edit lands.

    A tap redelivered after the kill can land after a newer one and redraw the older screen
    (Telegram redelivers what a dead worker never answered; the effect is idempotent, the
    screen is simply the earlier one). A person then taps again, and so does this one."""
    if then is None:
        await user.press(label)
        return
    for attempt in range(3):
        if attempt and not _has_button(user.tg.chat(user.id), label):
            break
        await user.press(label)
        try:
            await user.wait_chat(lambda chat: _has_button(chat, then), then, timeout=15)
            return
        except TimeoutError:
            continue
    await user.wait_chat(lambda chat: _has_button(chat, then), then)


async def _wait_for_quiet_books(db: Database) -> None:
    """Let the schedulers finish what the journeys started (upstream closes, the sender)."""
    deadline = time.monotonic() + 60
    while True:
        async with db.read() as conn:
            busy = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM orders WHERE status IN ('reserving', 'waiting') "
                        "OR upstream_state IN ('active', 'cancel_pending', 'finish_pending')"
                    )
                )
            ).scalar_one()
        if busy == 0 or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)
