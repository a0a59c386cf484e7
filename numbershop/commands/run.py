"""``numbershop run``: the whole shop in one process — or, without ``BOT_TOKEN``, the sandbox.

With a token: migrations (the embedded SQLite shop migrates itself; PostgreSQL must have been
migrated with ``numbershop db upgrade``), a catalogue sync from each configured provider, then
the bot (long polling), the notification sender, the scheduler and the staff dashboard, each
logging one line saying where it listens. Ctrl-C or SIGTERM stops them in reverse order and
lets in-flight work finish (``numbershop.runtime``); the exit status is 0.

Without a token: the same components, plus the sandbox (``numbershop.sandbox``): the Bot API
emulator and a web chat page on ``127.0.0.1:8088``, the bot pointed at the emulator and the
simulator as the only provider. Nothing to configure.

Listening sockets are bound before anything else happens, so a busy port is one line on
stderr (exit 2) and not a half-started shop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from core.app import Core, build_core
from core.bootstrap import database_errors, display_url
from core.catalog import sync_catalog
from core.clock import SystemClock
from core.config import Settings, load_settings
from core.db import migrate
from numbershop import sandbox as sb
from numbershop.cli import CliError
from numbershop.runtime import Component, ComponentFailed, drain_tasks, serve, stop_on_signals

log = logging.getLogger("numbershop.run")

# Libraries that narrate every start and stop at INFO; the components' own lines say it once.
CHATTY_LOGGERS = ("aiogram", "apscheduler", "uvicorn", "uvicorn.error", "aiohttp.access")


# --------------------------------------------------------------------------- components


class SenderComponent(Component):
    """The outbox sender, started before the bot and stopped after it: notifications that
    in-flight handlers queue while the bot stops still go out."""

    name = "sender"

    def __init__(self, app: Any, api_url: str) -> None:
        self.app = app
        self.api_url = api_url
        self._stop = asyncio.Event()

    async def start(self) -> str:
        self.task = asyncio.create_task(self.app.sender.run(self._stop), name="outbox-sender")
        rate = getattr(getattr(self.app.sender, "limits", None), "rate", None)
        return f"notification outbox → {self.api_url}" + (f" (≤{rate:g} msg/s)" if rate else "")

    async def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            await self.task


class BotComponent(Component):
    name = "bot"

    def __init__(self, app: Any, api_url: str) -> None:
        self.app = app
        self.api_url = api_url
        self._stop = asyncio.Event()

    async def start(self) -> str:
        try:
            me = await self.app.bot.get_me()
        except Exception as exc:  # noqa: BLE001 - bad token or unreachable API: one line
            raise ComponentFailed(f"bot: cannot reach the Bot API at {self.api_url}: {exc}") from None
        # The sender runs as its own component (see SenderComponent).
        self.task = asyncio.create_task(self.app.run(self._stop, run_sender=False), name="bot")
        return f"@{me.username} long polling {self.api_url}"

    async def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            await self.task


class SchedulerComponent(Component):
    name = "scheduler"

    def __init__(self, core: Core) -> None:
        self.core = core
        self._stop = asyncio.Event()

    async def start(self) -> str:
        from scheduler.runner import run_scheduler

        self.task = asyncio.create_task(run_scheduler(self.core, stop=self._stop), name="scheduler")
        s = self.core.settings
        return (f"jobs in this process: poll for codes every {s.SMS_POLL_INTERVAL_SECONDS:g}s, "
                f"expire, recover, retry upstream, safety net, reconcile every "
                f"{s.RECONCILE_INTERVAL_SECONDS}s, catalogue, key reaper")

    async def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            await self.task


class DashboardComponent(Component):
    """The Litestar dashboard under uvicorn, on a socket bound up front, sharing the core."""

    name = "dashboard"

    def __init__(self, core: Core, sock: socket.socket, *, note: str = "") -> None:
        self.core = core
        self.sock = sock
        self.note = note
        self.server: Any = None

    async def start(self) -> str:
        import uvicorn

        from admin.app import create_app

        class Server(uvicorn.Server):
            def capture_signals(self):  # type: ignore[no-untyped-def,override]
                # The process's signals belong to numbershop.runtime, not to uvicorn (which
                # would re-raise them at exit and turn a clean stop into status 130).
                import contextlib

                return contextlib.nullcontext()

        root = logging.getLogger()
        saved_handlers, saved_level = root.handlers[:], root.level
        app = create_app(self.core)
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=5)
        self.server = Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name="dashboard")
        deadline = asyncio.get_running_loop().time() + 15
        while not self.server.started:
            if self.task.done():
                raise ComponentFailed(self.failure())
            if asyncio.get_running_loop().time() > deadline:
                raise ComponentFailed("dashboard did not start within 15s")
            await asyncio.sleep(0.02)
        # Litestar's default logging config replaces the root logger's handlers at startup;
        # the process's log format is the command line's, so put it back.
        for handler in root.handlers[:]:
            if handler not in saved_handlers:
                root.removeHandler(handler)
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        host, port = self.sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/{self.note}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.task is not None:
            await self.task


# ------------------------------------------------------------------------------ wiring


@dataclass
class Plan:
    """What this run will start, decided before anything starts."""

    settings: Settings
    sandbox: bool
    web_sock: socket.socket | None = None
    admin_sock: socket.socket | None = None
    sockets: list[socket.socket] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("use a port between 0 and 65535")
    return value


def _code_delay(text: str) -> tuple[float, float] | None:
    value = text.strip().lower()
    if value in ("off", "never", "none"):
        return None
    low, sep, high = value.partition("-")
    try:
        pair = (float(low), float(high if sep else low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use MIN-MAX seconds (e.g. 10-60) or off") from None
    if pair[0] < 0 or pair[1] < pair[0]:
        raise argparse.ArgumentTypeError(f"{text!r}: use 0 <= MIN <= MAX")
    return pair


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return _port(raw)
    except argparse.ArgumentTypeError as exc:
        raise CliError(f"{name}: {exc}") from None


def _bind(host: str, port: int, what: str, flag: str) -> socket.socket:
    from numbershop.sandbox.web import bind

    try:
        return bind(host, port)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port} for the {what}: "
                       f"{exc.strerror or exc} (choose another with {flag})") from None


def _dashboard_available() -> bool:
    try:
        import admin.app  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == "admin" or exc.name.startswith("admin.")):
            return False
        raise
    return True


def plan(args: argparse.Namespace) -> Plan:
    settings = load_settings()
    sandbox = not settings.BOT_TOKEN
    p = Plan(settings=settings, sandbox=sandbox)
    try:
        if sandbox:
            p.web_sock = _bind(args.host, args.port, "sandbox", "--port or SANDBOX_PORT")
            p.sockets.append(p.web_sock)
            from numbershop.sandbox.web import base_url

            overrides: dict[str, Any] = dict(
                BOT_TOKEN=sb.SANDBOX_TOKEN, TELEGRAM_API_URL=base_url(p.web_sock),
                PROVIDERS=("simulator",), STAFF_CHAT_ID=None)
            if "DATABASE_URL" not in settings.model_fields_set:
                overrides["DATABASE_URL"] = sb.SANDBOX_DATABASE_URL
            p.settings = settings.model_copy(update=overrides)
        if not args.no_admin and _dashboard_available():
            p.admin_sock = _bind(args.admin_host, args.admin_port, "dashboard",
                                 "--admin-port, or --no-admin")
            p.sockets.append(p.admin_sock)
    except BaseException:
        p.close()
        raise
    return p


def _reset_sandbox_database(url: str) -> None:
    """The sandbox's own file starts afresh: the simulator's activations live in memory, so
    yesterday's open orders would point at activations that no longer exist."""
    database = make_url(url).database
    if not database:
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(database + suffix).unlink(missing_ok=True)


async def _migrate(settings: Settings) -> None:
    url = settings.DATABASE_URL
    with database_errors(url):
        await migrate.ensure_current(url, auto_upgrade=url.startswith("sqlite"))
        revision = await migrate.current_revision(url)
    log.info("%-9s %s at revision %s", "database", display_url(url), revision)


async def _sync_catalogues(core: Core) -> None:
    for name, provider in core.providers.items():
        try:
            result = await sync_catalog(core.db, provider, core.clock)
        except Exception as exc:  # noqa: BLE001 - the shop still starts; the scheduler retries
            log.warning("catalogue of %s not fetched: %s (the scheduler retries)", name, exc)
            continue
        log.info("%-9s %s: %d offers", "catalogue", name, result.stored)


async def _sandbox_staff(core: Core) -> str:
    """A fresh sandbox gets a dashboard login, shown in the log line and on the page."""
    from core.staff import StaffAccounts

    accounts = StaffAccounts(core.db, core.clock)
    if await accounts.count() > 0:
        return ""
    password = secrets.token_urlsafe(9)
    await accounts.create("sandbox", "admin", password, actor="sandbox")
    return password


async def cmd_run(args: argparse.Namespace) -> int:
    if not args.verbose:
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    p = plan(args)
    try:
        settings = p.settings
        if p.sandbox and "DATABASE_URL" not in load_settings().model_fields_set:
            _reset_sandbox_database(settings.DATABASE_URL)
        await _migrate(settings)
        return await _run(args, p)
    finally:
        p.close()


async def _run(args: argparse.Namespace, p: Plan) -> int:
    from bot.app import build_app, build_bot

    settings = p.settings
    panel = None
    if p.sandbox:
        from core.providers.breaker import BreakerBoard
        from core.providers.simulator import SimulatorProvider

        clock = SystemClock()
        board = BreakerBoard(redis_url=settings.REDIS_URL, clock=clock)
        simulator = SimulatorProvider(seed=settings.SIMULATOR_SEED, clock=clock,
                                      code_delay_s=args.code_delay)
        core = build_core(settings, clock=clock, board=board,
                          providers={"simulator": board.guard(simulator)})
    else:
        core = build_core(settings)
    try:
        with database_errors(settings.DATABASE_URL):
            await _sync_catalogues(core)
            app = build_app(core, build_bot(settings))
            components: list[Component] = []
            page_config: dict[str, Any] = {}
            if p.sandbox:
                from numbershop.emulator import Emulator
                from numbershop.sandbox.panel import DeliveryPanel
                from numbershop.sandbox.web import SandboxServer, make_sandbox_app

                emulator = Emulator(auto_register=False)
                tg = emulator.add_bot(sb.SANDBOX_TOKEN, username=sb.SANDBOX_BOT_USERNAME,
                                      first_name=sb.SANDBOX_BOT_NAME)
                panel = DeliveryPanel(simulator, core, on_delivered=app.sender.wake)
                page_config.update(user={"id": sb.DEFAULT_USER_ID, "first_name": sb.DEFAULT_USER_NAME},
                                   currency=settings.SHOP_CURRENCY, dashboard=None,
                                   auto_codes=None if args.code_delay is None else list(args.code_delay))
                assert p.web_sock is not None
                components.append(SandboxServer(make_sandbox_app(emulator, tg, panel, page_config),
                                                emulator, p.web_sock))
            components += [SenderComponent(app, settings.TELEGRAM_API_URL), BotComponent(app, settings.TELEGRAM_API_URL),
                           SchedulerComponent(core)]
            if p.admin_sock is not None:
                note = ""
                if p.sandbox:
                    password = await _sandbox_staff(core)
                    host, port = p.admin_sock.getsockname()[:2]
                    page_config["dashboard"] = {"url": f"http://{host}:{port}/", "username": "sandbox",
                                                "password": password or None}
                    if password:
                        note = f" (log in as sandbox / {password})"
                elif await _no_staff(core):
                    note = " (no staff yet: numbershop staff add NAME --role admin)"
                components.append(DashboardComponent(core, p.admin_sock, note=note))
            stop = asyncio.Event()
            with stop_on_signals(stop):
                if p.sandbox:
                    assert p.web_sock is not None
                    from numbershop.sandbox.web import base_url

                    print(f"numbershop sandbox: open {base_url(p.web_sock)}/ in your browser "
                          "(Ctrl-C to stop)", flush=True)
                try:
                    await serve(components, stop)
                except ComponentFailed as exc:
                    await drain_tasks()
                    raise CliError(str(exc)) from None
                await drain_tasks()
            await app.aclose()
    finally:
        await core.aclose()
    log.info("stopped")
    return 0


async def _no_staff(core: Core) -> bool:
    from core.staff import StaffAccounts

    return await StaffAccounts(core.db, core.clock).count() == 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = subparsers.add_parser(
        "run", help="run the whole shop in one process (the browser sandbox without BOT_TOKEN)",
        description="Run the bot, notification sender, scheduler and dashboard in one process. "
        "Without BOT_TOKEN: the sandbox (Bot API emulator, simulator, web chat page).")
    run.add_argument("--host", default=os.environ.get("SANDBOX_HOST", sb.DEFAULT_HOST),
                     help="sandbox page address (SANDBOX_HOST, default 127.0.0.1)")
    run.add_argument("--port", type=_port, default=None,
                     help="sandbox page port (SANDBOX_PORT, default 8088; 0 picks a free one)")
    run.add_argument("--code-delay", type=_code_delay, default=sb.DEFAULT_CODE_DELAY_S,
                     metavar="MIN-MAX|off",
                     help="sandbox: seconds until a simulated code arrives on its own "
                     "(default 10-60; off: only the page's Deliver button)")
    run.add_argument("--admin-host", default="127.0.0.1", help="dashboard address (127.0.0.1)")
    run.add_argument("--admin-port", type=_port, default=8000, help="dashboard port (8000)")
    run.add_argument("--no-admin", action="store_true", help="do not start the dashboard")
    run.set_defaults(func=_with_env_port)


async def _with_env_port(args: argparse.Namespace) -> int:
    if args.port is None:
        args.port = _env_port("SANDBOX_PORT", sb.DEFAULT_PORT)
    return await cmd_run(args)
