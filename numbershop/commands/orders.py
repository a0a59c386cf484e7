"""``numbershop orders …``: look up orders, newest first, and one order's full history.

Read-only: these commands never change an order (staff refunds and cancels go through the
dashboard, which records who did it and why).
"""

from __future__ import annotations

import argparse
from typing import Any

from core.bootstrap import open_core
from core.config import load_settings
from core.errors import UserNotFound
from core.money import format_amount
from core.order_states import OrderStatus
from core.orders import OrderView
from core.users import find_user
from numbershop.commands._shared import add_json_flag, limit, money, print_json, telegram_id

STATUSES = [s.value for s in OrderStatus]
DEFAULT_LIMIT = 20


def _order_json(order: OrderView, currency: str) -> dict[str, Any]:
    return {
        "id": order.id,
        "user_id": order.user_id,
        "telegram_id": order.telegram_id,
        "status": order.status,
        "service": order.service,
        "country": order.country,
        "price": money(order.price, currency),
        "cost": money(order.cost, currency),
        "provider": order.provider,
        "activation_id": order.activation_id,
        "phone": order.phone,
        "code": order.code,
        "failure_reason": order.failure_reason,
        "upstream_state": order.upstream_state,
        "hold_transfer_id": order.hold_transfer_id,
        "expires_at": order.expires_at,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "closed_at": order.closed_at,
    }


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _order_line(order: OrderView, currency: str) -> str:
    return (
        f"{_when(order.created_at)}  {order.id}  {order.status:<9}  "
        f"{order.service}/{order.country}  {format_amount(order.price, currency)}  "
        f"user {order.telegram_id}  {order.phone or '-'}"
    )


async def cmd_list(args: argparse.Namespace) -> int:
    settings = load_settings()
    currency = settings.SHOP_CURRENCY
    async with open_core(settings) as core:
        user_id = None
        if args.user is not None:
            async with core.db.read() as conn:
                user = await find_user(conn, args.user)
            if user is None:
                raise UserNotFound(f"no user with Telegram id {args.user}")
            user_id = user.id
        found = await core.orders.list_orders(user_id=user_id, status=args.status, limit=args.limit)
    if args.json:
        print_json({"count": len(found), "orders": [_order_json(o, currency) for o in found]})
    elif not found:
        print("no orders")
    else:
        for order in found:
            print(_order_line(order, currency))
    return 0


def _transfer_json(row: dict[str, Any], currency: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "code": row["code"],
        "debit_account_id": row["debit_account_id"],
        "credit_account_id": row["credit_account_id"],
        "amount": money(row["amount"], currency),
        "pending_id": row["pending_id"],
        "timeout_at": row["timeout_at"],
        "created_at": row["created_at"],
    }


def _event_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": row["event"],
        "from_status": row["from_status"],
        "to_status": row["to_status"],
        "actor": row["actor"],
        "detail": row["detail"],
        "created_at": row["created_at"],
    }


def _message_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "provider_message_id": row["provider_message_id"],
        "code": row["code"],
        "text": row["text"],
        "charged": bool(row["charged"]),
        "received_at": row["received_at"],
    }


async def cmd_show(args: argparse.Namespace) -> int:
    settings = load_settings()
    currency = settings.SHOP_CURRENCY
    async with open_core(settings) as core:
        detail = await core.orders.get_order_detail(args.order_id)
    order = detail.order
    if args.json:
        print_json(
            {
                "order": _order_json(order, currency),
                "events": [_event_json(e) for e in detail.events],
                "messages": [_message_json(m) for m in detail.messages],
                "transfers": [_transfer_json(t, currency) for t in detail.transfers],
            }
        )
        return 0
    print(f"order {order.id}: {order.status}")
    print(
        f"  user {order.telegram_id} (#{order.user_id}), {order.service} in {order.country}, "
        f"price {format_amount(order.price, currency)}"
        + (f", cost {format_amount(order.cost, currency)}" if order.cost is not None else "")
    )
    print(
        f"  provider {order.provider or '-'}, activation {order.activation_id or '-'}, "
        f"phone {order.phone or '-'}, code {order.code or '-'}, upstream {order.upstream_state}"
    )
    print(
        f"  created {_when(order.created_at)}, expires {_when(order.expires_at)}, "
        f"closed {_when(order.closed_at)}"
        + (f", failure: {order.failure_reason}" if order.failure_reason else "")
    )
    print("  events:")
    for e in detail.events:
        change = f"{e['from_status'] or '-'} -> {e['to_status'] or '-'}"
        print(f"    {_when(e['created_at'])}  {e['event']:<10} {change:<22} by {e['actor']}")
    print("  messages:" + ("" if detail.messages else " none"))
    for m in detail.messages:
        charged = " (charged)" if m["charged"] else ""
        print(f"    {_when(m['received_at'])}  code {m['code'] or '-'}{charged}: {m['text'] or ''}")
    print("  transfers:")
    for t in detail.transfers:
        print(
            f"    {_when(t['created_at'])}  {t['kind']:<12} {t['code']:<8} "
            f"{format_amount(t['amount'], currency)}  {t['id']}"
        )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("orders", help="look up orders")
    cmds = group.add_subparsers(dest="orders_command", metavar="ACTION", required=True)

    ls = cmds.add_parser("list", help="recent orders, newest first")
    ls.add_argument("--user", type=telegram_id, metavar="TELEGRAM_ID", help="only this user's")
    ls.add_argument(
        "--status", choices=STATUSES, metavar="S", help="only orders in this status: " + ", ".join(STATUSES)
    )
    ls.add_argument(
        "--limit",
        type=limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N orders (default {DEFAULT_LIMIT})",
    )
    add_json_flag(ls)
    ls.set_defaults(func=cmd_list)

    show = cmds.add_parser("show", help="one order with its events, messages and transfers")
    show.add_argument("order_id", metavar="ID")
    add_json_flag(show)
    show.set_defaults(func=cmd_show)
