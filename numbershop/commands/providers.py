"""``numbershop providers status [--json]``: each configured provider's breaker and balance.

Asks every provider in ``PROVIDERS`` for its upstream balance (through its circuit breaker,
so a failure shows up as the breaker's failure count and last error), then prints the
breaker state. Breaker state is per process unless ``REDIS_URL`` is set, in which case it is
the state all processes share. Exit code 0 when every provider answered, 1 when any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from core.clock import SystemClock
from core.config import load_settings
from core.money import format_amount
from core.providers.breaker import BreakerBoard
from core.providers.errors import ProviderError
from core.providers.registry import build_providers
from numbershop.commands._shared import add_json_flag, print_json

BALANCE_TIMEOUT_S = 30.0


async def _balance(provider: Any) -> tuple[Any, str | None]:
    try:
        return await asyncio.wait_for(provider.balance(), timeout=BALANCE_TIMEOUT_S), None
    except TimeoutError:
        return None, f"no answer within {BALANCE_TIMEOUT_S:.0f}s"
    except ProviderError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - reported per provider, never a traceback
        return None, f"{type(exc).__name__}: {exc}"


async def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings()
    clock = SystemClock()
    board = BreakerBoard(redis_url=settings.REDIS_URL, clock=clock)
    providers = build_providers(settings, clock, board)
    try:
        results = await asyncio.gather(*(_balance(p) for p in providers.values()))
        states = await board.astates()
    finally:
        for provider in providers.values():
            try:
                await provider.aclose()
            except Exception:  # noqa: BLE001, S110 - closing is best effort
                pass
        await board.aclose()
    rows = []
    for (name, _), (balance, error) in zip(providers.items(), results, strict=True):
        info = states.get(name)
        rows.append({
            "name": name,
            "breaker": {
                "state": info.state if info else "closed",
                "failure_count": info.failure_count if info else 0,
                "last_error": info.last_error if info else None,
                "opened_at": info.opened_at if info else None,
            },
            "balance": None if balance is None else {
                "amount": balance.amount, "currency": balance.currency,
                "formatted": format_amount(balance.amount, balance.currency),
            },
            "error": error,
        })
    if args.json:
        print_json({"providers": rows})
    else:
        _print_table(rows)
    return 1 if any(r["error"] for r in rows) else 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    header = ("PROVIDER", "BREAKER", "FAILURES", "BALANCE", "LAST ERROR")
    lines = [header]
    for r in rows:
        b = r["breaker"]
        balance = r["balance"]["formatted"] if r["balance"] else "-"
        last = r["error"] or b["last_error"] or "-"
        lines.append((r["name"], b["state"], str(b["failure_count"]), balance, last))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        cells = [cell.ljust(w) for cell, w in zip(line, widths, strict=False)]
        sys.stdout.write("  ".join([*cells, line[-1]]).rstrip() + "\n")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = subparsers.add_parser("providers", help="upstream providers: breakers and balances")
    sub = group.add_subparsers(dest="providers_command", metavar="ACTION")
    sub.required = True
    status = sub.add_parser("status", help="breaker state, failures, last error and balance")
    add_json_flag(status)
    status.set_defaults(func=cmd_status)
