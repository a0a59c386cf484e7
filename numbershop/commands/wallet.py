"""``numbershop wallet …``: a user's balance, and staff credits and debits.

AMOUNT is parsed here, before anything opens the database, so a malformed or negative amount
changes nothing (not even the user row a credit would create). Every change is one ledger
transfer with an audit row, made by ``core.wallets``; ``--idempotency-key`` makes a retried
command find its first transfer instead of moving money twice.
"""

from __future__ import annotations

import argparse

from core.bootstrap import open_core
from core.config import load_settings
from core.errors import InsufficientFunds
from core.money import format_amount, parse_positive_amount
from core.wallets import WalletView
from numbershop.cli import CliError
from numbershop.commands._shared import add_json_flag, cli_actor, money, print_json, telegram_id


def _wallet_json(view: WalletView, currency: str) -> dict[str, object]:
    return {
        "telegram_id": view.telegram_id,
        "user_id": view.user_id,
        "currency": currency,
        "balance": money(view.balance, currency),
        "held": money(view.held, currency),
        "available": money(view.available, currency),
    }


def _wallet_line(view: WalletView, currency: str) -> str:
    return (
        f"balance {format_amount(view.balance, currency)}, held {format_amount(view.held, currency)}, "
        f"available {format_amount(view.available, currency)}"
    )


async def cmd_show(args: argparse.Namespace) -> int:
    settings = load_settings()
    currency = settings.SHOP_CURRENCY
    async with open_core(settings) as core:
        view = await core.wallets.show(args.telegram_id)
    if args.json:
        print_json(_wallet_json(view, currency))
    else:
        print(f"user {view.telegram_id} (#{view.user_id}): {_wallet_line(view, currency)}")
    return 0


async def _change(args: argparse.Namespace, direction: str) -> int:
    settings = load_settings()
    currency = settings.SHOP_CURRENCY
    amount = parse_positive_amount(args.amount, currency)
    reason = args.reason.strip()
    if not reason:
        raise CliError("--reason must say why (it goes to the audit log)")
    key = args.idempotency_key
    if key is not None and not key.strip():
        raise CliError("--idempotency-key must not be empty")
    async with open_core(settings) as core:
        move = core.wallets.credit if direction == "credit" else core.wallets.debit
        try:
            change = await move(
                args.telegram_id, amount, reason=reason, idempotency_key=key, actor=cli_actor()
            )
        except InsufficientFunds as exc:
            available = "" if exc.available is None else (f" of {format_amount(exc.available, currency)}")
            raise CliError(
                f"cannot debit {format_amount(amount, currency)}: more than the available balance{available}"
            ) from None
    if args.json:
        print_json(
            {
                "action": direction,
                "created": change.created,
                "transfer_id": change.transfer_id,
                "amount": money(change.amount, currency),
                "reason": reason,
                "idempotency_key": key,
                **_wallet_json(change.wallet, currency),
            }
        )
    else:
        verb = "credited to" if direction == "credit" else "debited from"
        done = "" if change.created else " (already done earlier with this idempotency key)"
        print(
            f"{format_amount(change.amount, currency)} {verb} user {change.wallet.telegram_id}"
            f"{done}; transfer {change.transfer_id}; now {_wallet_line(change.wallet, currency)}"
        )
    return 0


async def cmd_credit(args: argparse.Namespace) -> int:
    return await _change(args, "credit")


async def cmd_debit(args: argparse.Namespace) -> int:
    return await _change(args, "debit")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("wallet", help="user wallets: show, credit, debit")
    cmds = group.add_subparsers(dest="wallet_command", metavar="ACTION", required=True)

    show = cmds.add_parser("show", help="balance, held and available for a user")
    show.add_argument("telegram_id", type=telegram_id, metavar="TELEGRAM_ID")
    add_json_flag(show)
    show.set_defaults(func=cmd_show)

    for name, func, text in (
        ("credit", cmd_credit, "add money to a wallet (creates the user if unknown)"),
        ("debit", cmd_debit, "take money from a wallet (at most its available balance)"),
    ):
        p = cmds.add_parser(name, help=text)
        p.add_argument("telegram_id", type=telegram_id, metavar="TELEGRAM_ID")
        p.add_argument("amount", metavar="AMOUNT", help="decimal in SHOP_CURRENCY, e.g. 5.00")
        p.add_argument("--reason", required=True, help="why (recorded in the audit log)")
        p.add_argument("--idempotency-key", metavar="K", help="a retry with the same key does nothing more")
        add_json_flag(p)
        p.set_defaults(func=func)
