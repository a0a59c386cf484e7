"""``numbershop bot run``: the Telegram bot by long polling, with its notification sender.

``BOT_TOKEN`` is required (the one line on stderr says where to get and put it);
``TELEGRAM_API_URL`` points the client at another Bot API server, such as ``numbershop
emulator serve``. The embedded SQLite database migrates itself; PostgreSQL must have been
migrated with ``numbershop db upgrade``. Ctrl-C or SIGTERM stops polling, lets in-flight
updates finish and the sender settle its batch, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from sqlalchemy import func, select

from core.bootstrap import open_core
from core.catalog import sync_catalog
from core.config import load_settings
from core.db.tables import offers
from numbershop.cli import CliError

log = logging.getLogger("numbershop.bot")

MISSING_TOKEN = (
    "BOT_TOKEN is not set: create a bot with @BotFather and put BOT_TOKEN=<token> in .env "
    "or the environment (or run `numbershop run` for the sandbox without a token)"
)


async def _ensure_catalogue(core) -> None:  # noqa: ANN001
    """A bot started alone on an empty database has nothing to sell: fetch each provider's
    catalogue once (the scheduler keeps it fresh afterwards)."""
    async with core.db.read() as conn:
        count = await conn.scalar(select(func.count()).select_from(offers))
    if count:
        return
    for name, provider in core.providers.items():
        try:
            result = await sync_catalog(core.db, provider, core.clock)
            log.info("catalogue of %s: %d offers", name, result.stored)
        except Exception as exc:  # noqa: BLE001 - the bot still starts; the scheduler retries
            log.warning("could not fetch the catalogue of %s: %s", name, exc)


async def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.BOT_TOKEN:
        raise CliError(MISSING_TOKEN)
    # Lazy: aiogram loads only when the bot really starts (not for `bot --help` or a missing token).
    from bot.app import build_app, build_bot
    from bot.warmup import freeze_startup_objects

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
            except Exception as exc:  # noqa: BLE001 - bad token or unreachable API: one line
                await app.aclose()
                raise CliError(f"cannot reach the Bot API at {settings.TELEGRAM_API_URL}: {exc}") from None
            log.info("bot @%s polling %s (Ctrl-C to stop)", me.username, settings.TELEGRAM_API_URL)
            freeze_startup_objects()
            try:
                await app.run(stop)
            finally:
                await app.aclose()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    log.info("bot stopped")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = subparsers.add_parser("bot", help="the Telegram bot")
    sub = group.add_subparsers(dest="bot_command", metavar="ACTION")
    sub.required = True
    run = sub.add_parser("run", help="long-poll Telegram (TELEGRAM_API_URL) and send notifications")
    run.set_defaults(func=cmd_run)
