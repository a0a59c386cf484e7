"""``numbershop ledger check``: prove the books balance (the invariants of core.invariants).

Exit 0 when every invariant holds, 1 when any is broken (each violation listed), 2 for bad
input or configuration — so a cron job or CI step can alert on a non-zero exit.
"""

from __future__ import annotations

import argparse

from core.bootstrap import open_core
from core.config import load_settings
from core.invariants import INVARIANT_COUNT, check_invariants
from numbershop.commands._shared import add_json_flag, print_json

DEFAULT_GRACE_SECONDS = 120


def _grace(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the grace period cannot be negative")
    return value


async def cmd_check(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_core(settings) as core:
        now = core.clock.now()
        violations = await check_invariants(core.db, now, args.grace_seconds)
    if args.json:
        print_json(
            {
                "ok": not violations,
                "checked_at": now,
                "grace_seconds": args.grace_seconds,
                "violations": [
                    {"invariant": v.invariant, "code": v.code, "message": v.message, "ref": v.ref}
                    for v in violations
                ],
            }
        )
    elif not violations:
        print(f"ledger ok: all {INVARIANT_COUNT} invariants hold")
    else:
        print(f"ledger check found {len(violations)} violation(s):")
        for v in violations:
            ref = f" [{v.ref}]" if v.ref else ""
            print(f"  invariant {v.invariant} {v.code}: {v.message}{ref}")
    return 1 if violations else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("ledger", help="the books")
    cmds = group.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    check = cmds.add_parser("check", help="verify every ledger invariant (exit 1 on violations)")
    check.add_argument(
        "--grace-seconds",
        type=_grace,
        default=DEFAULT_GRACE_SECONDS,
        metavar="N",
        help="how long past its timeout a hold may stay pending before it counts "
        f"(the safety-net job's interval; default {DEFAULT_GRACE_SECONDS})",
    )
    add_json_flag(check)
    check.set_defaults(func=cmd_check)
