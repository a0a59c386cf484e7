"""Helpers the db, wallet, ledger and orders command groups share: argument types, output."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import date, datetime
from typing import Any

from core.money import money_json

MAX_LIMIT = 1000


def telegram_id(text: str) -> int:
    """argparse type: a positive integer Telegram user id."""
    value = text.strip()
    if not value.isdigit() or int(value) <= 0 or len(value) > 18:
        raise argparse.ArgumentTypeError(f"{text!r} is not a Telegram user id")
    return int(value)


def limit(text: str) -> int:
    """argparse type: how many rows, 1..MAX_LIMIT."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"use a limit between 1 and {MAX_LIMIT}")
    return value


def port(text: str) -> int:
    """argparse type for a TCP port; 0 asks the OS for a free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("use a port between 0 and 65535 (0 picks a free one)")
    return value


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def cli_actor() -> str:
    """Who the audit log names for a command-line change: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except Exception:
        return "cli"


def money(minor: int | None, currency: str) -> dict[str, object] | None:
    return None if minor is None else money_json(minor, currency)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def print_json(obj: dict[str, Any]) -> None:
    """Exactly one JSON object on stdout, one line, for scripts to parse."""
    sys.stdout.write(json.dumps(obj, default=_default, ensure_ascii=False, sort_keys=False) + "\n")
