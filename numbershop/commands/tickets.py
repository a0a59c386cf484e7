"""``numbershop tickets …``: the buyers' "code didn't work" reports.

``resolve`` refunds the order's price and ``reject`` closes the ticket with a message to the
buyer; both are audited under ``cli:<os user>`` and safe to repeat (a repeat changes
nothing and says so).
"""

from __future__ import annotations

import argparse
from typing import Any

from core import tickets
from core.bootstrap import open_core
from core.config import load_settings
from core.money import format_amount
from core.tickets import Ticket
from numbershop.commands._shared import add_json_flag, cli_actor, limit, money, print_json

STATES = [s.value for s in tickets.TicketState]
DEFAULT_LIMIT = 50


def ticket_number(text: str) -> int:
    """argparse type: a ticket number."""
    value = text.strip().lstrip("#")
    if not value.isdigit() or int(value) <= 0 or len(value) > 12:
        raise argparse.ArgumentTypeError(f"{text!r} is not a ticket number")
    return int(value)


def _json(t: Ticket, currency: str) -> dict[str, Any]:
    return {
        "id": t.id,
        "state": t.state,
        "order_id": t.order_id,
        "order_status": t.order_status,
        "telegram_id": t.telegram_id,
        "service": t.service,
        "country": t.country,
        "price": money(t.price, currency),
        "reason": t.reason,
        "staff_note": t.staff_note,
        "closed_by": t.closed_by,
        "created_at": t.created_at,
        "closed_at": t.closed_at,
    }


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _line(t: Ticket, currency: str) -> str:
    return (
        f"#{t.id:<5} {t.state:<9} {_when(t.created_at)}  order {t.order_id} ({t.order_status})  "
        f"{t.service}/{t.country}  {format_amount(t.price, currency)}  user {t.telegram_id}"
    )


async def cmd_list(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_core(settings) as core:
        found = await tickets.list_tickets(core.db, state=args.state, limit=args.limit)
    if args.json:
        print_json({"count": len(found), "tickets": [_json(t, settings.SHOP_CURRENCY) for t in found]})
    elif not found:
        print("no tickets")
    else:
        for t in found:
            print(_line(t, settings.SHOP_CURRENCY))
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_core(settings) as core:
        t = await tickets.get_ticket(core.db, args.ticket)
    if args.json:
        print_json({"ticket": _json(t, settings.SHOP_CURRENCY)})
        return 0
    print(_line(t, settings.SHOP_CURRENCY))
    print(f"  reason {t.reason}; closed {_when(t.closed_at)} by {t.closed_by or '-'}")
    print(f"  note: {t.staff_note or '-'}")
    print(f"  the order's history: numbershop orders show {t.order_id}")
    return 0


def _outcome(out: tickets.Outcome, args: argparse.Namespace, currency: str, done: str) -> int:
    if args.json:
        print_json({"changed": out.changed, "ticket": _json(out.ticket, currency)})
    elif out.changed:
        print(f"ticket #{out.ticket.id} {done}")
    else:
        print(f"ticket #{out.ticket.id} was already {out.ticket.state}; nothing changed")
    return 0


async def cmd_resolve(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_core(settings) as core:
        out = await tickets.resolve(
            core.db, core.clock, core.orders, args.ticket, actor=cli_actor(), note=args.note
        )
    price = format_amount(out.ticket.price, settings.SHOP_CURRENCY)
    return _outcome(out, args, settings.SHOP_CURRENCY, f"resolved: {price} refunded to the buyer")


async def cmd_reject(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_core(settings) as core:
        out = await tickets.reject(core.db, core.clock, args.ticket, actor=cli_actor(), note=args.message)
    return _outcome(out, args, settings.SHOP_CURRENCY, "rejected; the buyer gets your message")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("tickets", help="buyers' \"code didn't work\" reports")
    cmds = group.add_subparsers(dest="tickets_command", metavar="ACTION", required=True)

    ls = cmds.add_parser("list", help="open tickets first (oldest on top), then closed ones")
    ls.add_argument("--state", choices=STATES, metavar="S", help="only this state: " + ", ".join(STATES))
    ls.add_argument("--limit", type=limit, default=DEFAULT_LIMIT, metavar="N", help="at most N tickets")
    add_json_flag(ls)
    ls.set_defaults(func=cmd_list)

    show = cmds.add_parser("show", help="one ticket")
    show.add_argument("ticket", type=ticket_number, metavar="ID")
    add_json_flag(show)
    show.set_defaults(func=cmd_show)

    resolve = cmds.add_parser("resolve", help="refund the order's price and close the ticket")
    resolve.add_argument("ticket", type=ticket_number, metavar="ID")
    resolve.add_argument("--note", default=None, help="an optional note shown to the buyer")
    add_json_flag(resolve)
    resolve.set_defaults(func=cmd_resolve)

    reject = cmds.add_parser("reject", help="close the ticket without a refund, with a message to the buyer")
    reject.add_argument("ticket", type=ticket_number, metavar="ID")
    reject.add_argument("--message", required=True, help="what the buyer is told")
    add_json_flag(reject)
    reject.set_defaults(func=cmd_reject)
