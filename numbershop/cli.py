"""``numbershop`` — the command line, a thin composition root over core services.

Each command group lives in ``numbershop/commands/<group>.py`` and exposes
``register(subparsers)``; its parsers set ``func`` to a callable taking the parsed args and
returning an exit code (it may be a coroutine function). Exit codes: 0 success, 1 the command
ran and found problems (e.g. ledger violations), 2 bad input or configuration — always with
one line on stderr, never a traceback.

Only the module of the command being run is imported: the groups pull in the database, the
bot or the dashboard, which takes seconds, and ``numbershop --help`` needs none of it. The
other commands get a placeholder parser carrying their line from ``COMMANDS``. This module
itself imports only the standard library and core's plain error types at the top.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from core.errors import ShopError
from core.money import MoneyError

#: Command → its one line in ``numbershop --help``; the module is ``numbershop.commands.<name>``
#: and registers the same line (a test checks they agree).
COMMANDS: dict[str, str] = {
    "db": "database schema",
    "wallet": "user wallets: show, credit, debit",
    "ledger": "the books",
    "orders": "look up orders",
    "simulator": "the simulated upstream provider",
    "providers": "upstream providers: breakers and balances",
    "emulator": "the emulated Telegram Bot API server",
    "bot": "the Telegram bot",
    "admin": "the staff dashboard",
    "staff": "dashboard staff accounts",
    "scheduler": "the scheduled jobs (polling, expiry, reconciliation…)",
    "reconcile": "check ledger, orders and providers agree (dry run unless --execute)",
    "run": "run the whole shop in one process (the browser sandbox without BOT_TOKEN)",
    "doctor": "check a production configuration (database, Redis, Telegram, providers, secrets)",
    "tickets": "buyers' \"code didn't work\" reports",
    "promo": "promo codes: create, list, disable",
}
TOP_LEVEL_FLAGS = frozenset({"-v", "--verbose"})


class CliError(Exception):
    """Bad input at the command line: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's default prints usage + exits 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def chosen_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs, if it names one (``None`` for ``--help`` or a typo)."""
    for arg in argv:
        if arg not in TOP_LEVEL_FLAGS:
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: the full one of the command it names, placeholders for the
    rest. ``argv=None`` builds every command in full (slow: it imports them all)."""
    only = None if argv is None else chosen_command(argv)
    parser = _Parser(prog="numbershop", description="Run and operate the numbershop.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_line in COMMANDS.items():
        if argv is None or name == only:
            importlib.import_module(f"numbershop.commands.{name}").register(sub)
        else:
            sub.add_parser(name, help=help_line)
    return parser


# A line per update handled and per provider request: hundreds a second on a busy shop,
# which bury everything else and cost the workers CPU. Shown with -v.
PER_EVENT_LOGGERS = ("aiogram.event", "httpx")


def configure_logging(*, verbose: bool) -> None:
    """``LOG_LEVEL`` (DEBUG with ``-v``), and every handler of the root logger masks
    secrets (``core.logmask``): the configured ones by value, and key-like query parameters
    and bot tokens by shape. Bad settings are left for the command to report."""
    from core.config import ConfigError, load_settings
    from core.logmask import install_secret_masking, secret_values

    try:
        settings = load_settings()
    except ConfigError:
        settings = None
    level = logging.DEBUG if verbose else getattr(logging, settings.LOG_LEVEL if settings else "INFO")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in PER_EVENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else max(level, logging.WARNING))
    install_secret_masking(secret_values(settings) if settings else [])


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    configure_logging(verbose=args.verbose)
    # Lazy: core.config loads pydantic, which only a command that runs needs, not --help.
    from core.config import ConfigError

    try:
        result = asyncio.run(func(args)) if inspect.iscoroutinefunction(func) else func(args)
    except KeyboardInterrupt:
        return 130
    except (CliError, ConfigError, MoneyError, ShopError) as exc:
        print(f"numbershop: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
