"""``numbershop promo …``: create, list and disable promo codes.

Amounts and the expiry are parsed before the database opens, so bad input exits 2 with one
line and changes nothing. Redemptions happen in the bot (``/promo CODE`` or a
``?start=promo_CODE`` link) and are paid from the ``marketing`` system account.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from core.bootstrap import open_core
from core.config import load_settings
from core.money import format_amount, parse_positive_amount
from core.promo import PromoCode
from numbershop.cli import CliError
from numbershop.commands._shared import add_json_flag, cli_actor, money, print_json


def _expiry(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--expires {text!r}: use a date like 2027-01-31 or 2027-01-31T18:00") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than zero")
    return value


def _json(code: PromoCode, currency: str, now: datetime) -> dict[str, object]:
    return {
        "code": code.code,
        "amount": money(code.amount, currency),
        "max_uses": code.max_uses,
        "used": code.used,
        "budget": money(code.budget, currency),
        "spent": money(code.spent, currency),
        "expires_at": code.expires_at,
        "state": code.state(now),
        "created_by": code.created_by,
        "created_at": code.created_at,
    }


def _line(code: PromoCode, currency: str, now: datetime) -> str:
    expiry = code.expires_at.strftime("%Y-%m-%d %H:%M UTC") if code.expires_at else "never"
    return (
        f"{code.code}: {format_amount(code.amount, currency)} each, used {code.used}/{code.max_uses}, "
        f"spent {format_amount(code.spent, currency)} of {format_amount(code.budget, currency)}, "
        f"expires {expiry}, {code.state(now)}"
    )


async def cmd_create(args: argparse.Namespace) -> int:
    settings = load_settings()
    currency = settings.SHOP_CURRENCY
    amount = parse_positive_amount(args.amount, currency)
    budget = parse_positive_amount(args.budget, currency) if args.budget else None
    expires_at = _expiry(args.expires)
    async with open_core(settings) as core:
        code = await core.promos.create(
            args.code,
            amount=amount,
            max_uses=args.uses,
            budget=budget,
            expires_at=expires_at,
            actor=cli_actor(),
        )
        now = core.clock.now()
    if args.json:
        print_json(_json(code, currency, now))
    else:
        print(f"created {_line(code, currency, now)}")
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    settings = load_settings()
    currency = settings.SHOP_CURRENCY
    async with open_core(settings) as core:
        codes = await core.promos.codes()
        now = core.clock.now()
    if args.json:
        print_json({"codes": [_json(c, currency, now) for c in codes]})
    else:
        for c in codes:
            print(_line(c, currency, now))
        if not codes:
            print("no promo codes yet")
    return 0


async def cmd_disable(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_core(settings) as core:
        changed = await core.promos.disable(args.code, actor=cli_actor(), reason=args.reason)
    print(f"{args.code.upper()} disabled" if changed else f"{args.code.upper()} was already disabled")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("promo", help="promo codes: create, list, disable")
    cmds = group.add_subparsers(dest="promo_command", metavar="ACTION", required=True)

    create = cmds.add_parser("create", help="a new code buyers redeem once each")
    create.add_argument("code", metavar="CODE", help="3-32 letters, digits, '-' or '_' (stored upper case)")
    create.add_argument("amount", metavar="AMOUNT", help="credited per redemption, e.g. 2.00")
    create.add_argument("--uses", type=_positive_int, required=True, help="total redemptions allowed")
    create.add_argument("--budget", metavar="AMOUNT", help="most paid out in total (default amount × uses)")
    create.add_argument("--expires", metavar="WHEN", help="UTC date or date-time it stops working")
    add_json_flag(create)
    create.set_defaults(func=cmd_create)

    listing = cmds.add_parser("list", help="every code with its uses and budget")
    add_json_flag(listing)
    listing.set_defaults(func=cmd_list)

    disable = cmds.add_parser("disable", help="stop a code (redemptions made stay made)")
    disable.add_argument("code", metavar="CODE")
    disable.add_argument("--reason", help="why (recorded in the audit log)")
    disable.set_defaults(func=cmd_disable)
