"""``numbershop providers status [--json]``: each configured provider instance, its breaker,
balance, and what its catalogue holds that the shop cannot map.

Lists every instance in ``PROVIDERS`` (name, kind, preset, URL host), asks each for its
upstream balance (through its circuit breaker, so a failure shows up as the breaker's failure
count and last error), and — for adapters that can tell — which of the provider's service
codes and country ids map to no canonical service or ISO country (so they are never sold).
It also shows the delivery statistics routing ranks offers by (per provider, service and
country: numbers rented, codes delivered, the smoothed success rate, the mean time to the
first code); when the database cannot be read they are reported as unavailable, and the
exit code does not change. Breaker state is per process unless ``REDIS_URL`` is set, in which
case it is the state all processes share. Exit code 0 when every provider answered, 1 when
any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from core import routing
from core.clock import SystemClock
from core.config import Settings, load_settings
from core.db.engine import Database
from core.money import format_amount
from core.providers.breaker import BreakerBoard
from core.providers.catalogue_gaps import CatalogueGaps, ReportsCatalogueGaps
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
    except Exception as exc:  # reported per provider, never a traceback
        return None, f"{type(exc).__name__}: {exc}"


async def _gaps(provider: Any) -> tuple[CatalogueGaps | None, str | None]:
    """The adapter's unmapped catalogue entries, through the breaker; (None, None) if it
    cannot tell."""
    inner = getattr(provider, "inner", provider)
    if not isinstance(inner, ReportsCatalogueGaps):
        return None, None
    call = inner.catalogue_gaps
    board = getattr(provider, "board", None)
    try:
        work = board.call(provider.name, "catalogue_gaps", call) if board else call()
        return await asyncio.wait_for(work, timeout=BALANCE_TIMEOUT_S), None
    except TimeoutError:
        return None, f"no answer within {BALANCE_TIMEOUT_S:.0f}s"
    except Exception as exc:  # reported per provider, never a traceback
        return None, f"{type(exc).__name__}: {exc}"


async def _no_gaps() -> tuple[CatalogueGaps | None, str | None]:
    return None, None


async def _delivery(settings: Settings, now: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The delivery statistics, or why they could not be read (never a traceback)."""
    url = make_url(settings.DATABASE_URL)
    if (
        url.get_backend_name() == "sqlite"
        and url.database
        and not await asyncio.to_thread(Path(url.database).exists)
    ):
        return [], f"no database at {url.database}"  # a status call creates no file
    db = Database(settings.DATABASE_URL)
    try:
        return await routing.status_rows(db, settings, now), None
    except Exception as exc:  # a database not migrated yet, or not reachable
        return [], f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        await db.dispose()


async def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings()
    clock = SystemClock()
    board = BreakerBoard(redis_url=settings.REDIS_URL, clock=clock)
    providers = build_providers(settings, clock, board)
    try:
        results = await asyncio.gather(*(_balance(p) for p in providers.values()))
        # only where the balance answered: a provider that is down would fail twice
        gaps = await asyncio.gather(
            *(
                _gaps(p) if error is None else _no_gaps()
                for p, (_, error) in zip(providers.values(), results, strict=True)
            )
        )
        states = await board.astates()
    finally:
        for provider in providers.values():
            try:
                await provider.aclose()
            except Exception:  # closing is best effort
                pass
        await board.aclose()
    delivery, delivery_error = await _delivery(settings, clock.now())
    rows = []
    instances = settings.provider_instances
    for instance, (balance, error), (gap, gap_error) in zip(instances, results, gaps, strict=True):
        name = instance.name
        info = states.get(name)
        rows.append(
            {
                "name": name,
                "kind": instance.kind,
                "preset": instance.preset,
                "host": instance.host,
                "breaker": {
                    "state": info.state if info else "closed",
                    "failure_count": info.failure_count if info else 0,
                    "last_error": info.last_error if info else None,
                    "opened_at": info.opened_at if info else None,
                },
                "balance": None
                if balance is None
                else {
                    "amount": balance.amount,
                    "currency": balance.currency,
                    "formatted": format_amount(balance.amount, balance.currency),
                },
                "error": error,
                "unmapped": None
                if gap is None
                else {"services": list(gap.services), "countries": list(gap.countries)},
                "unmapped_error": gap_error,
            }
        )
    if args.json:
        print_json({"providers": rows, "delivery": delivery, "delivery_error": delivery_error})
    else:
        _print_table(rows)
        _print_gaps(rows)
        _print_delivery(delivery, delivery_error)
    return 1 if any(r["error"] for r in rows) else 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    header = ("PROVIDER", "KIND", "PRESET", "HOST", "BREAKER", "FAILURES", "BALANCE", "LAST ERROR")
    lines = [header]
    for r in rows:
        b = r["breaker"]
        balance = r["balance"]["formatted"] if r["balance"] else "-"
        last = r["error"] or b["last_error"] or "-"
        lines.append(
            (
                r["name"],
                r["kind"],
                r["preset"] or "-",
                r["host"] or "-",
                b["state"],
                str(b["failure_count"]),
                balance,
                last,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        cells = [cell.ljust(w) for cell, w in zip(line, widths, strict=False)]
        sys.stdout.write("  ".join([*cells, line[-1]]).rstrip() + "\n")


def _print_gaps(rows: list[dict[str, Any]]) -> None:
    """One line per provider whose catalogue holds entries the shop cannot map."""
    for r in rows:
        gap = r["unmapped"]
        if r["unmapped_error"]:
            sys.stdout.write(f"{r['name']}: unmapped entries unknown ({r['unmapped_error']})\n")
        elif gap and (gap["services"] or gap["countries"]):
            parts = [f"{key} {', '.join(gap[key])}" for key in ("services", "countries") if gap[key]]
            sys.stdout.write(f"{r['name']}: not mapped, never sold: {'; '.join(parts)}\n")


def _print_delivery(rows: list[dict[str, Any]], error: str | None) -> None:
    """Routing's view of each provider × service × country, most rentals first."""
    if error:
        sys.stdout.write(f"delivery statistics unavailable ({error})\n")
        return
    if not rows:
        sys.stdout.write("delivery statistics: no closed orders folded yet\n")
        return
    header = ("PROVIDER", "SERVICE", "COUNTRY", "RENTED", "CODES", "SUCCESS", "FIRST CODE", "")
    lines = [header]
    for r in rows:
        first = r["first_code_seconds"]
        lines.append(
            (
                r["provider"],
                r["service"],
                r["country"],
                str(r["rentals"]),
                str(r["codes"]),
                f"{100 * r['success_rate']:.0f}%",
                f"{first:.0f} s" if first is not None else "-",
                "below floor" if r["below_floor"] else "",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    sys.stdout.write("\n")
    for line in lines:
        cells = [cell.ljust(w) for cell, w in zip(line, widths, strict=True)]
        sys.stdout.write("  ".join(cells).rstrip() + "\n")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("providers", help="upstream providers: breakers and balances")
    sub = group.add_subparsers(dest="providers_command", metavar="ACTION")
    sub.required = True
    status = sub.add_parser("status", help="breaker state, failures, last error and balance")
    add_json_flag(status)
    status.set_defaults(func=cmd_status)
