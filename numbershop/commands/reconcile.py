"""``numbershop reconcile``: compare the books, the orders and the providers; fix what drifted.

Dry run by default: lists every finding and what ``--execute`` would do about it, and writes
nothing at all. ``--execute`` repairs idempotently (a second run finds nothing to fix) and
stores the run. Exit 0 when clean or everything found was fixed, 1 when findings remain,
2 for bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from core.bootstrap import open_core
from core.config import load_settings
from core.reconcile import DEFAULT_DAYS, Reconciler
from core.reconcile_report import ReconcileReport
from numbershop.commands._shared import add_json_flag, cli_actor, print_json

MAX_DAYS = 36500
BAR_WIDTH = 24


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the number of days cannot be negative")
    if value > MAX_DAYS:
        raise argparse.ArgumentTypeError(f"use at most {MAX_DAYS} days")
    return value


class ProgressBar:
    """A one-line bar on a terminal's stderr, redrawn in place and cleared at the end."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.drawn = False

    def __call__(self, label: str, done: int, total: int) -> None:
        filled = BAR_WIDTH * done // max(total, 1)
        self.stream.write(
            f"\rreconcile [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} {label:<28.28}"
        )
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r" + " " * (BAR_WIDTH + 48) + "\r")
            self.stream.flush()


def _print_report(report: ReconcileReport, days: int, execute: bool) -> None:
    kind = "execute" if execute else "dry run"
    print(
        f"reconciliation ({kind}) over orders created in the last {days} day(s): "
        f"{len(report.findings)} finding(s)"
    )
    for f in report.findings:
        ref = f" [{f.ref}]" if f.ref else ""
        print(f"  {f.code}{ref}: {f.message}")
        if f.fixed:
            print(f"      fixed: {f.fix}")
        elif f.fix and not execute:
            print(f"      would fix: {f.fix}")
        elif f.fix:
            print(f"      NOT fixed ({f.error or 'unknown reason'}): {f.fix}")
        else:
            print("      needs staff: no automatic fix")
    if not report.findings:
        print("everything agrees: ledger, orders and providers")
    elif not execute:
        fixable = sum(1 for f in report.findings if f.fix)
        print(f"dry run: nothing was changed; --execute would fix {fixable} of {len(report.findings)}")
    else:
        print(f"run #{report.run_id}: fixed {len(report.fixes)}, remaining {len(report.remaining)}")


async def cmd_reconcile(args: argparse.Namespace) -> int:
    settings = load_settings()
    bar = ProgressBar(sys.stderr) if not args.json and sys.stderr.isatty() else None
    async with open_core(settings, with_providers=True) as core:
        reconciler = Reconciler.from_core(core, actor=cli_actor())
        try:
            report = await reconciler.run(days=args.days, execute=args.execute, progress=bar)
        finally:
            if bar is not None:
                bar.close()
    if args.json:
        print_json({**report.as_dict(), "dry_run": not args.execute})
    else:
        _print_report(report, args.days, args.execute)
    return 1 if report.remaining else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "reconcile",
        help="check ledger, orders and providers agree (dry run unless --execute)",
        description="Check every ledger invariant, orders against the ledger, and our orders "
        "against each provider's active activations. Exit 0 clean or fixed, "
        "1 findings remain.",
    )
    cmd.add_argument(
        "--days",
        type=_days,
        default=DEFAULT_DAYS,
        metavar="N",
        help=f"look at orders created in the last N days (default {DEFAULT_DAYS})",
    )
    mode = cmd.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run", action="store_true", help="list what would be fixed and change nothing (the default)"
    )
    mode.add_argument(
        "--execute", action="store_true", help="fix what can be fixed safely and record the run"
    )
    add_json_flag(cmd)
    cmd.set_defaults(func=cmd_reconcile)
