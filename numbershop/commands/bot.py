"""``numbershop bot run``: the Telegram bot by long polling (default) or, with ``--webhook``,
by serving Telegram's webhook POSTs; with its notification sender either way.

``BOT_TOKEN`` is required (the one line on stderr says where to get and put it);
``TELEGRAM_API_URL`` points the client at another Bot API server, such as ``numbershop
emulator serve``. The embedded SQLite database migrates itself; PostgreSQL must have been
migrated with ``numbershop db upgrade``. Ctrl-C or SIGTERM stops polling, lets in-flight
updates finish and the sender settle its batch, then exits 0.

Webhook mode needs ``WEBHOOK_URL`` (https) and ``WEBHOOK_SECRET``; it listens on
``WEBHOOK_HOST:WEBHOOK_PORT`` and registers the webhook at start (polling deletes it at
start, so switching modes is one restart). ``--workers N`` starts N copies of itself on one
port (SO_REUSEPORT) and forwards SIGINT/SIGTERM to them; the copies share state only through
the database and Redis, so N > 1 needs ``REDIS_URL`` and a PostgreSQL ``DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys

from sqlalchemy import func, select

from core.app import Core
from core.bootstrap import open_core
from core.catalogue import sync_catalogue
from core.config import Settings, load_settings
from core.db.tables import offers
from numbershop.cli import CliError

log = logging.getLogger("numbershop.bot")

MISSING_TOKEN = (
    "BOT_TOKEN is not set: create a bot with @BotFather and put BOT_TOKEN=<token> in .env "
    "or the environment (or run `numbershop run` for the sandbox without a token)"
)


async def _ensure_catalogue(core: Core) -> None:
    """A bot started alone on an empty database has nothing to sell: fetch each provider's
    catalogue once (the scheduler keeps it fresh afterwards)."""
    async with core.db.read() as conn:
        count = await conn.scalar(select(func.count()).select_from(offers))
    if count:
        return
    for name, provider in core.providers.items():
        try:
            result = await sync_catalogue(core.db, provider, core.clock)
            log.info("catalogue of %s: %d offers", name, result.stored)
        except Exception as exc:
            log.warning("could not fetch the catalogue of %s: %s", name, exc)


#: Set in the environment of the copies ``--workers N`` starts: listen with SO_REUSEPORT.
WORKER_MARKER = "NUMBERSHOP_BOT_WORKER"


def _check_mode(settings: Settings, webhook: bool, workers: int) -> None:
    """Refuse a configuration that cannot work, with one line saying why."""
    if workers < 1:
        raise CliError("--workers must be at least 1")
    if not webhook:
        if workers > 1:
            raise CliError("--workers needs --webhook: Telegram allows one poller per token")
        return
    if not settings.WEBHOOK_URL:
        raise CliError(
            "WEBHOOK_URL is not set: webhook mode needs the public https URL Telegram should POST updates to"
        )
    if not settings.WEBHOOK_SECRET:
        raise CliError(
            "WEBHOOK_SECRET is not set: webhook mode needs a secret (1-256 "
            "characters A-Z a-z 0-9 _ -) to tell Telegram's requests from others"
        )
    if workers > 1:
        missing = []
        if not settings.REDIS_URL:
            missing.append("REDIS_URL")
        if not settings.DATABASE_URL.startswith("postgresql"):
            missing.append("a PostgreSQL DATABASE_URL")
        if missing:
            raise CliError(
                f"--workers {workers} needs {' and '.join(missing)}: workers share "
                "conversation state, rate limits and the books only through them"
            )


def _run_workers(count: int) -> int:
    """Start ``count`` copies of this command as workers on one port; wait for them all.

    SIGINT/SIGTERM are forwarded; a worker that exits on its own stops the others (a
    half-sized pool would hide a crash). The exit code is the first non-zero one, else 0.
    """
    argv = [sys.executable, "-m", "numbershop", "bot", "run", "--webhook", "--workers", "1"]
    env = {**os.environ, WORKER_MARKER: "1"}
    children = [subprocess.Popen(argv, env=env) for _ in range(count)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes: dict[int, int] = {}
        while len(codes) < len(children):
            for child in children:
                if child.pid in codes:
                    continue
                try:
                    codes[child.pid] = child.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue
                if codes[child.pid] != 0:
                    forward(signal.SIGTERM, None)
        bad = [c for c in codes.values() if c != 0]
        return bad[0] if bad else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.BOT_TOKEN:
        raise CliError(MISSING_TOKEN)
    _check_mode(settings, args.webhook, args.workers)
    if args.workers > 1:
        return _run_workers(args.workers)
    return asyncio.run(_serve(settings, webhook=args.webhook))


async def _serve(settings: Settings, *, webhook: bool) -> int:
    # Lazy: aiogram loads only when the bot really starts (not for `bot --help` or a missing token).
    from bot.app import build_app, build_bot
    from bot.warmup import freeze_startup_objects
    from bot.webhook import WebhookConfig

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with open_core(settings, with_providers=True) as core:
            await _ensure_catalogue(core)
            app = build_app(core, build_bot(settings))
            try:
                me = await app.bot.get_me()
            except Exception as exc:
                await app.aclose()
                raise CliError(f"cannot reach the Bot API at {settings.TELEGRAM_API_URL}: {exc}") from None
            freeze_startup_objects()
            try:
                if webhook:
                    assert settings.WEBHOOK_URL and settings.WEBHOOK_SECRET  # _check_mode
                    config = WebhookConfig(
                        url=settings.WEBHOOK_URL,
                        secret=settings.WEBHOOK_SECRET,
                        host=settings.WEBHOOK_HOST,
                        port=settings.WEBHOOK_PORT,
                        max_connections=settings.WEBHOOK_MAX_CONNECTIONS,
                        reuse_port=os.environ.get(WORKER_MARKER) == "1",
                    )
                    log.info("bot @%s in webhook mode (Ctrl-C to stop)", me.username)
                    await app.run_webhook(stop, config)
                else:
                    log.info("bot @%s polling %s (Ctrl-C to stop)", me.username, settings.TELEGRAM_API_URL)
                    await app.run(stop)
            finally:
                await app.aclose()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    log.info("bot stopped")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("bot", help="the Telegram bot")
    sub = group.add_subparsers(dest="bot_command", metavar="ACTION")
    sub.required = True
    run = sub.add_parser("run", help="long-poll Telegram (TELEGRAM_API_URL) and send notifications")
    run.add_argument(
        "--webhook",
        action="store_true",
        help="serve webhook POSTs (WEBHOOK_URL, WEBHOOK_SECRET) instead of polling",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="webhook mode: N processes on one port (needs REDIS_URL and PostgreSQL)",
    )
    run.set_defaults(func=cmd_run)
