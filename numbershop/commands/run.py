"""``numbershop run``: the whole shop in one process — or, without ``BOT_TOKEN``, the sandbox.

With a token: migrations (the embedded SQLite shop migrates itself; PostgreSQL must have been
migrated with ``numbershop db upgrade``), a catalogue sync from each configured provider, then
the bot (long polling), the notification sender, the scheduler and the staff dashboard, each
logging one line saying where it listens. Ctrl-C or SIGTERM stops them in reverse order and
lets in-flight work finish (``numbershop.runtime``); the exit status is 0.

Without a token: the same components, plus the sandbox (``numbershop.sandbox``): the Bot API
emulator and a web chat page on ``127.0.0.1:8088``, the bot pointed at the emulator, the
simulator as the only provider, and a database of its own (``./data/sandbox.db``, started
afresh; ``DATABASE_URL`` and ``REDIS_URL`` are left alone). Nothing to configure.

Listening sockets are bound before anything else happens, so a busy port is one line on
stderr (exit 2) and not a half-started shop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from core.app import Core, build_core
from core.bootstrap import database_errors, display_url
from core.catalogue import sync_catalogue
from core.clock import SystemClock
from core.config import Settings, load_settings
from core.db import migrate
from numbershop import sandbox as sb
from numbershop.cli import CliError
from numbershop.commands._shared import port
from numbershop.cryptopay_sim import PREFIX as CRYPTOPAY_PREFIX
from numbershop.cryptopay_sim import SANDBOX_CRYPTOPAY_TOKEN
from numbershop.runtime import Component, ComponentFailed, drain_tasks, serve, stop_on_signals

log = logging.getLogger("numbershop.run")

# Libraries that narrate every start and stop at INFO; the components' own lines say it once.
CHATTY_LOGGERS = ("aiogram", "apscheduler", "uvicorn", "uvicorn.error", "aiohttp.access")


class CutJobNotice(logging.Filter):
    """APScheduler 3's asyncio executor cancels jobs still running when the scheduler shuts
    down and logs each as an ERROR with the CancelledError's traceback. A job cut at a stop
    is expected and safe (its claims are leases that lapse; its transitions are
    compare-and-set), so it is one INFO line here, not a traceback on a clean exit."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError):
            job = record.args[0] if isinstance(record.args, tuple) and record.args else "a job"
            record.msg, record.args = (
                "job %s stopped mid-run by the shutdown; it resumes on the next start",
                (job,),
            )
            record.exc_info, record.exc_text, record.stack_info = None, None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


# --------------------------------------------------------------------------- components


class DatabaseStep(Component):
    """Migrate (SQLite) or check the schema (PostgreSQL). Shielded: a stop during start-up
    waits for the migration's one transaction instead of cutting it."""

    name = "database"

    def __init__(self, settings: Settings, *, reset: bool) -> None:
        self.settings = settings
        self.reset = reset
        self._work: asyncio.Task[str | None] | None = None

    async def start(self) -> str:
        url = self.settings.DATABASE_URL
        if self.reset:
            _reset_sandbox_database(url)
        self._work = asyncio.create_task(self._migrate(url), name="migrate")
        revision = await asyncio.shield(self._work)
        return f"{display_url(url)} at revision {revision}"

    @staticmethod
    async def _migrate(url: str) -> str | None:
        with database_errors(url):
            await migrate.ensure_current(url, auto_upgrade=url.startswith("sqlite"))
            return await migrate.current_revision(url)

    async def stop(self) -> None:
        if self._work is not None and not self._work.done():
            await asyncio.wait({self._work})


class CatalogueStep(Component):
    """Fetch each provider's catalogue once, so the shop has something to sell at once; a
    provider that fails is a warning (the scheduler's sync ticker retries)."""

    name = "catalogue"

    def __init__(self, core: Core) -> None:
        self.core = core

    async def start(self) -> str:
        parts = []
        for name, provider in self.core.providers.items():
            try:
                with database_errors(self.core.settings.DATABASE_URL):
                    result = await sync_catalogue(self.core.db, provider, self.core.clock)
            except Exception as exc:
                log.warning("catalogue of %s not fetched: %s (the scheduler retries)", name, exc)
                parts.append(f"{name}: not fetched")
                continue
            parts.append(f"{name}: {result.stored} offers")
        return "; ".join(parts) or "no providers"

    async def stop(self) -> None:
        return None


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


class InFlightUpdates:
    """Knows which updates the dispatcher is handling right now.

    aiogram's ``stop_polling`` stops fetching updates but does not wait for the handlers it
    already started as tasks; the bot must not be reported stopped (and the Bot API server,
    the sender and the database closed behind it) while one is still answering a user. The
    count starts at ``feed_update``, before any middleware, so an update still queued for
    the database in the dedupe middleware counts too.
    """

    def __init__(self, dp: Any) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()
        feed = dp.feed_update

        async def feed_update(*args: Any, **kwargs: Any) -> Any:
            task = asyncio.current_task()
            if task is not None:
                self.tasks.add(task)
            try:
                return await feed(*args, **kwargs)
            finally:
                self.tasks.discard(task)

        dp.feed_update = feed_update

    async def wait(self, timeout: float) -> int:
        """Wait for the handlers running now; returns how many were still running at the end."""
        current = asyncio.current_task()
        running = {t for t in self.tasks if t is not current and not t.done()}
        if not running:
            return 0
        _, late = await asyncio.wait(running, timeout=timeout)
        return len(late)


class BotComponent(Component):
    name = "bot"
    HANDLERS_TIMEOUT_S = 15.0

    def __init__(self, app: Any, api_url: str) -> None:
        self.app = app
        self.api_url = api_url
        self._stop = asyncio.Event()
        self.in_flight = InFlightUpdates(app.dp)

    async def start(self) -> str:
        try:
            me = await self.app.bot.get_me()
        except Exception as exc:
            raise ComponentFailed(f"bot: cannot reach the Bot API at {self.api_url}: {exc}") from None
        # The sender runs as its own component (see SenderComponent).
        self.task = asyncio.create_task(self.app.run(self._stop, run_sender=False), name="bot")
        return f"@{me.username} long polling {self.api_url}"

    async def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            await self.task
        late = await self.in_flight.wait(self.HANDLERS_TIMEOUT_S)
        if late:
            log.warning(
                "bot: %d update(s) still being handled after %.0fs; left to finish "
                "(or to be resumed by the jobs)",
                late,
                self.HANDLERS_TIMEOUT_S,
            )


class SchedulerComponent(Component):
    name = "scheduler"

    def __init__(self, core: Core) -> None:
        self.core = core
        self._stop = asyncio.Event()

    async def start(self) -> str:
        from scheduler.runner import run_scheduler

        self.task = asyncio.create_task(run_scheduler(self.core, stop=self._stop), name="scheduler")
        s = self.core.settings
        return (
            f"jobs in this process: poll for codes every {s.SMS_POLL_INTERVAL_SECONDS:g}s, "
            f"expire, recover, retry upstream, safety net, reconcile every "
            f"{s.RECONCILE_INTERVAL_SECONDS}s, catalogue, key reaper, retention, provider balances, "
            "delivery statistics"
        )

    async def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            await self.task


class DashboardComponent(Component):
    """The Litestar dashboard under uvicorn, on a socket bound up front, sharing the core."""

    name = "dashboard"

    def __init__(
        self,
        core: Core,
        sock: socket.socket,
        *,
        sandbox: bool = False,
        page_config: dict[str, Any] | None = None,
        secure_cookies: bool = False,
        proxy_headers: bool = False,
        forwarded_allow_ips: str = "127.0.0.1",
    ) -> None:
        self.core = core
        self.sock = sock
        self.sandbox = sandbox
        self.page_config = page_config
        self.secure_cookies = secure_cookies
        self.proxy_headers = proxy_headers
        self.forwarded_allow_ips = forwarded_allow_ips
        self.server: Any = None

    async def _login_note(self, url: str) -> str:
        """A fresh sandbox gets a dashboard login, its password shown here only: the chat
        page names the login but is never given the password (any page that reaches the
        sandbox's unauthenticated API could read it). A real shop with no staff yet is told
        how to make one."""
        from core.staff import StaffAccounts

        accounts = StaffAccounts(self.core.db, self.core.clock)
        if await accounts.count() > 0:
            return ""
        if not self.sandbox:
            return " (no staff yet: numbershop staff add NAME --role admin)"
        password = secrets.token_urlsafe(9)
        await accounts.create("sandbox", "admin", password, actor="sandbox")
        if self.page_config is not None:
            self.page_config["dashboard"] = {"url": url, "username": "sandbox"}
        return f" (log in as sandbox / {password})"

    async def start(self) -> str:
        import uvicorn

        from admin.app import create_app

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                # The process's signals belong to numbershop.runtime, not to uvicorn (which
                # would re-raise them at exit and turn a clean stop into status 130).
                yield

        root = logging.getLogger()
        saved_handlers, saved_level = root.handlers[:], root.level
        app = create_app(self.core, secure_cookies=self.secure_cookies)
        # uvicorn trusts X-Forwarded-For from 127.0.0.1 unless told otherwise: a forged header
        # from any local client would then name a fresh address to the login throttle.
        config = uvicorn.Config(
            app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            proxy_headers=self.proxy_headers,
            forwarded_allow_ips=self.forwarded_allow_ips,
        )
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
        url = f"http://{shown}:{port}/"
        return url + await self._login_note(url)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.task is not None:
            await self.task


# ------------------------------------------------------------------------------ wiring


@dataclass
class Plan:
    """What this run will start, decided (and its ports bound) before anything starts."""

    settings: Settings
    sandbox: bool
    reset_db: bool = False
    web_sock: socket.socket | None = None
    admin_sock: socket.socket | None = None
    sockets: list[socket.socket] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def _code_delay(text: str) -> tuple[float, float] | None:
    value = text.strip().lower()
    if value in ("off", "never", "none"):
        return None
    low, sep, high = value.partition("-")
    try:
        pair = (float(low), float(high if sep else low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use MIN-MAX seconds (e.g. 10-60) or off") from None
    if not all(math.isfinite(x) for x in pair) or pair[0] < 0 or pair[1] < pair[0]:
        raise argparse.ArgumentTypeError(f"{text!r}: use 0 <= MIN <= MAX")
    return pair


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return port(raw)
    except argparse.ArgumentTypeError as exc:
        raise CliError(f"{name}: {exc}") from None


def _bind(host: str, port: int, what: str, flag: str) -> socket.socket:
    from numbershop.sandbox.web import bind

    try:
        return bind(host, port)
    except OSError as exc:
        raise CliError(
            f"cannot listen on {host}:{port} for the {what}: "
            f"{exc.strerror or exc} (choose another with {flag})"
        ) from None


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
    p = Plan(settings=settings, sandbox=not settings.BOT_TOKEN)
    try:
        if p.sandbox:
            from numbershop.sandbox.web import base_url

            p.web_sock = _bind(args.host, args.port, "sandbox", "--port or SANDBOX_PORT")
            p.sockets.append(p.web_sock)
            # Play money never touches the configured shop: its own database (fresh each run,
            # as the emulator's update ids and the simulator's rentals are), no shared Redis.
            unused = [n for n in ("DATABASE_URL", "REDIS_URL") if n in settings.model_fields_set]
            if unused:
                log.info(
                    "sandbox: %s not used; play money stays in %s, started afresh",
                    " and ".join(unused) + (" is" if len(unused) == 1 else " are"),
                    display_url(sb.SANDBOX_DATABASE_URL),
                )
            p.settings = settings.model_copy(
                update=dict(
                    BOT_TOKEN=sb.SANDBOX_TOKEN,
                    TELEGRAM_API_URL=base_url(p.web_sock),
                    PROVIDERS=("simulator",),
                    STAFF_CHAT_ID=None,
                    REDIS_URL=None,
                    DATABASE_URL=sb.SANDBOX_DATABASE_URL,
                    # Crypto top-ups are paid on the sandbox's simulated Crypto Pay server.
                    CRYPTOPAY_TOKEN=SANDBOX_CRYPTOPAY_TOKEN,
                    CRYPTOPAY_URL=base_url(p.web_sock) + CRYPTOPAY_PREFIX,
                )
            )
            p.reset_db = True
        if not args.no_admin and _dashboard_available():
            p.admin_sock = _bind(args.admin_host, args.admin_port, "dashboard", "--admin-port, or --no-admin")
            p.sockets.append(p.admin_sock)
    except BaseException:
        p.close()
        raise
    return p


def _reset_sandbox_database(url: str) -> None:
    """The sandbox's own file starts afresh. Its emulator and simulator live in memory: the
    last run's open orders would point at activations that no longer exist, and the new
    emulator numbers updates from 1 again, which the bot's update log would drop as
    redeliveries of the last run's."""
    database = make_url(url).database
    if not database or database == ":memory:":
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(database + suffix).unlink(missing_ok=True)


def _build_core(p: Plan, args: argparse.Namespace) -> tuple[Core, Any]:
    """The core; in the sandbox also the raw simulator (the panel delivers codes through it)."""
    if not p.sandbox:
        return build_core(p.settings), None
    from core.providers.breaker import BreakerBoard
    from core.providers.simulator import SimulatorProvider

    clock = SystemClock()
    board = BreakerBoard(redis_url=p.settings.REDIS_URL, clock=clock)
    simulator = SimulatorProvider(seed=p.settings.SIMULATOR_SEED, clock=clock, code_delay_s=args.code_delay)
    core = build_core(p.settings, clock=clock, board=board, providers={"simulator": board.guard(simulator)})
    return core, simulator


def _components(p: Plan, args: argparse.Namespace, core: Core, simulator: Any, app: Any) -> list[Component]:
    """In start order; they stop in reverse (see numbershop.runtime)."""
    settings = p.settings
    parts: list[Component] = [DatabaseStep(settings, reset=p.reset_db), CatalogueStep(core)]
    page_config: dict[str, Any] | None = None
    if p.sandbox:
        from core.hosts import HostPolicy
        from numbershop.emulator import Emulator
        from numbershop.sandbox.panel import DeliveryPanel
        from numbershop.sandbox.web import SandboxServer, make_sandbox_app

        assert p.web_sock is not None
        emulator = Emulator(auto_register=False)
        tg = emulator.add_bot(
            sb.SANDBOX_TOKEN, username=sb.SANDBOX_BOT_USERNAME, first_name=sb.SANDBOX_BOT_NAME
        )
        panel = DeliveryPanel(simulator, core, on_delivered=app.sender.wake)
        page_config = dict(
            user={"id": sb.DEFAULT_USER_ID, "first_name": sb.DEFAULT_USER_NAME},
            currency=settings.SHOP_CURRENCY,
            dashboard=None,
            auto_codes=None if args.code_delay is None else list(args.code_delay),
        )
        hosts = HostPolicy(settings.ALLOWED_HOSTS, bind_host=args.host)
        cryptopay = _cryptopay_sim(p, core)
        parts.append(
            SandboxServer(
                make_sandbox_app(emulator, tg, panel, page_config, hosts=hosts, cryptopay=cryptopay),
                emulator,
                p.web_sock,
            )
        )
    parts += [
        SenderComponent(app, settings.TELEGRAM_API_URL),
        BotComponent(app, settings.TELEGRAM_API_URL),
        SchedulerComponent(core),
    ]
    if p.admin_sock is not None:
        parts.append(
            DashboardComponent(
                core,
                p.admin_sock,
                sandbox=p.sandbox,
                page_config=page_config,
                secure_cookies=args.secure_cookies,
                proxy_headers=args.proxy_headers,
                forwarded_allow_ips=args.forwarded_allow_ips,
            )
        )
    return parts


def _cryptopay_sim(p: Plan, core: Core) -> Any:
    """The sandbox's Crypto Pay server; its webhooks go to the dashboard when there is one
    (without it the scheduler's poll credits the payments)."""
    from numbershop.cryptopay_sim import CryptoPaySim
    from numbershop.sandbox.web import base_url

    assert p.web_sock is not None
    sim = CryptoPaySim(core.clock, base_url(p.web_sock))
    if p.admin_sock is not None:
        sim.webhook_url = base_url(p.admin_sock) + "/webhooks/cryptopay"
    return sim


async def cmd_run(args: argparse.Namespace) -> int:
    if not args.verbose:
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("apscheduler.executors.default").addFilter(CutJobNotice())
    stop = asyncio.Event()
    with stop_on_signals(stop):
        p = plan(args)
        try:
            return await _run(args, p, stop)
        finally:
            p.close()


async def _run(args: argparse.Namespace, p: Plan, stop: asyncio.Event) -> int:
    from bot.app import build_app, build_bot
    from bot.warmup import keep_response_models

    core, simulator = _build_core(p, args)
    try:
        app = build_app(core, build_bot(p.settings))
        keep_response_models()
        try:
            try:
                await serve(_components(p, args, core, simulator, app), stop, ready=lambda: _announce(p))
            except ComponentFailed as exc:
                await drain_tasks()
                raise CliError(str(exc)) from None
            await drain_tasks()
        finally:
            await app.aclose()
    finally:
        await core.aclose()
    log.info("stopped")
    return 0


def _announce(p: Plan) -> None:
    """The one line a newcomer needs, on stdout once everything is up."""
    if p.sandbox and p.web_sock is not None:
        from numbershop.sandbox.web import base_url

        print(
            f"numbershop sandbox: open {base_url(p.web_sock)}/ in your browser (Ctrl-C to stop)", flush=True
        )
    else:
        print("numbershop: running (Ctrl-C to stop)", flush=True)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the whole shop in one process (the browser sandbox without BOT_TOKEN)",
        description="Run the bot, notification sender, scheduler and dashboard in one process. "
        "Without BOT_TOKEN: the sandbox (Bot API emulator, simulator, web chat page).",
    )
    run.add_argument(
        "--host",
        default=os.environ.get("SANDBOX_HOST", sb.DEFAULT_HOST),
        help="sandbox page address (SANDBOX_HOST, default 127.0.0.1)",
    )
    run.add_argument(
        "--port",
        type=port,
        default=None,
        help="sandbox page port (SANDBOX_PORT, default 8088; 0 picks a free one)",
    )
    run.add_argument(
        "--code-delay",
        type=_code_delay,
        default=sb.DEFAULT_CODE_DELAY_S,
        metavar="MIN-MAX|off",
        help="sandbox: seconds until a simulated code arrives on its own "
        "(default 10-60; off: only the page's Deliver button)",
    )
    run.add_argument("--admin-host", default="127.0.0.1", help="dashboard address (127.0.0.1)")
    run.add_argument("--admin-port", type=port, default=8000, help="dashboard port (8000)")
    run.add_argument("--no-admin", action="store_true", help="do not start the dashboard")
    run.add_argument(
        "--secure-cookies",
        action="store_true",
        help="dashboard: mark cookies Secure (when served over HTTPS)",
    )
    run.add_argument(
        "--proxy-headers",
        action="store_true",
        help="dashboard: trust X-Forwarded-For from --forwarded-allow-ips "
        "(behind a reverse proxy; off by default)",
    )
    run.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="dashboard: proxies whose X-Forwarded-For is trusted (127.0.0.1)",
    )
    run.set_defaults(func=_with_env_port)


async def _with_env_port(args: argparse.Namespace) -> int:
    if args.port is None:
        args.port = _env_port("SANDBOX_PORT", sb.DEFAULT_PORT)
    return await cmd_run(args)
