"""``numbershop`` — the command line, a thin composition root over core services.

Each command group lives in ``numbershop/commands/<group>.py`` and exposes
``register(subparsers)``; its parsers set ``func`` to a callable taking the parsed args and
returning an exit code (it may be a coroutine function). Exit codes: 0 success, 1 the command
ran and found problems (e.g. ledger violations), 2 bad input or configuration — always with
one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import sys
from collections.abc import Sequence

from core.config import ConfigError
from core.errors import ShopError
from core.money import MoneyError

COMMAND_MODULES = [
    "db",
    "wallet",
    "ledger",
    "orders",
    "simulator",
    "providers",
    "emulator",
    "bot",
    "admin",
    "staff",
    "scheduler",
    "reconcile",
    "run",
    "doctor",
]


class CliError(Exception):
    """Bad input at the command line: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default prints usage + exits 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="numbershop", description="Run and operate the numbershop.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"numbershop.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"numbershop.commands.{name}":
                continue  # a command group still being written
            raise
        module.register(sub)
    return parser


def mask_secrets_in_logs() -> None:
    """Every handler of the root logger masks secrets (``core.logmask``): the configured
    ones by value, and key-like query parameters and bot tokens by shape. Bad settings are
    left for the command to report."""
    from core.config import load_settings
    from core.logmask import install_secret_masking, secret_values

    try:
        secrets = secret_values(load_settings())
    except ConfigError:
        secrets = []
    install_secret_masking(secrets)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    mask_secrets_in_logs()
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
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
