"""Plain words for the dashboard: names instead of codes, amounts in the shop currency,
sentences instead of raw event data.

Staff read these pages to answer a user's question ("where did my money go?"), so every code
the database stores is turned into what it means here, in one place: a renamed transfer kind
or a new order event is a one-line change in a table below, never a template hunt.
Pure functions (no I/O), so each is tested as a table of inputs and expected words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.catalogue_data import COUNTRIES_BY_CODE, SERVICES_BY_CODE
from core.money import format_amount

# Detail keys whose values are amounts in minor units of the shop currency.
MONEY_KEYS = frozenset({"amount", "price", "refunded", "cost", "fixed_price", "captured", "released"})

# Ledger transfer codes → (word, what it means). Old and new names both map, so a rename in
# core shows the same word on old and new rows.
TRANSFER_WORDS: dict[str, tuple[str, str]] = {
    "hold": ("Hold", "money set aside from the wallet while an order waits for its code"),
    "purchase": ("Hold", "money set aside from the wallet while an order waits for its code"),
    "capture": ("Capture", "the held money is taken by the shop: the code arrived"),
    "void": ("Void", "the hold is cancelled and the money is free in the wallet again"),
    "release": ("Void", "the hold is cancelled and the money is free in the wallet again"),
    "refund": ("Refund", "money paid back to the wallet by staff after a capture"),
    "topup": ("Top-up", "money the user paid into their wallet"),
    "top_up": ("Top-up", "money the user paid into their wallet"),
    "adjustment": ("Staff adjustment", "a credit or debit made by staff, with a reason"),
}

# System account codes (shards are "revenue#15") → a name for people.
ACCOUNT_WORDS = {
    "revenue": "Shop revenue",
    "topups": "Top-ups received",
    "adjustments": "Staff adjustments",
}

STATUS_WORDS = {
    "posted": "posted",
    "pending": "hold placed",
    "post_pending": "hold captured",
    "void_pending": "hold voided",
}

_FIRST_DIGITS = re.compile(r"\d+")


def number(value: int | float | None) -> str:
    """``12345`` → ``"12,345"``; ``None`` → ``"—"``."""
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def plural(count: int | None, singular: str, plural_form: str | None = None) -> str:
    """``(1, "order")`` → ``"1 order"``; ``(2, "order")`` → ``"2 orders"``; with separators."""
    n = int(count or 0)
    word = singular if n == 1 else (plural_form or singular + "s")
    return f"{number(n)} {word}"


def money(minor: int | None, currency: str) -> str:
    """An amount in the shop currency with thousands separators: ``123456`` → ``"$1,234.56"``."""
    if minor is None:
        return "—"
    text = format_amount(int(minor), currency)
    return _FIRST_DIGITS.sub(lambda m: f"{int(m.group()):,}", text, count=1)


def flag(country: str | None) -> str:
    """An ISO 3166-1 alpha-2 code as its flag: two regional indicator symbols."""
    code = (country or "").strip().upper()
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        return ""
    return "".join(chr(0x1F1E6 + ord(ch) - ord("A")) for ch in code)


def country_name(country: str | None) -> str:
    """``"GB"`` → ``"🇬🇧 United Kingdom"``; an unknown code stays as it is, with its flag."""
    code = (country or "").strip().upper()
    if not code:
        return "—"
    data = COUNTRIES_BY_CODE.get(code)
    mark = flag(code)
    name = data.name if data else code
    return f"{mark} {name}" if mark else name


def service_name(service: str | None) -> str:
    """``"whatsapp"`` → ``"WhatsApp"``; an unknown code stays as it is."""
    code = (service or "").strip().lower()
    if not code:
        return "—"
    data = SERVICES_BY_CODE.get(code)
    return data.name if data else code


def transfer_kind(code: str | None) -> str:
    """A ledger transfer's code as a word: ``"release"`` → ``"Void"``."""
    return TRANSFER_WORDS.get(code or "", (code or "—", ""))[0]


def transfer_meaning(code: str | None) -> str:
    """What a transfer of this code does, in one phrase (for the ledger's legend and titles)."""
    return TRANSFER_WORDS.get(code or "", ("", ""))[1]


def transfer_state(kind: str | None) -> str:
    """A transfer's phase (``posted``, ``pending``, …) in words."""
    return STATUS_WORDS.get(kind or "", kind or "—")


def account_name(name: str | None) -> str:
    """A system account code (shards included) for people; wallets keep their own label."""
    if not name:
        return "—"
    base = name.split("#", 1)[0]
    return ACCOUNT_WORDS.get(base, name)


def actor_name(actor: str | None) -> str:
    """``"staff:alice"`` → ``"alice (staff)"``; ``"user"`` → ``"the user"``."""
    if not actor:
        return "—"
    kind, _, who = actor.partition(":")
    if who:
        return f"{who} ({'staff' if kind == 'staff' else kind})"
    return {
        "user": "the user",
        "system": "the shop",
        "scheduler": "the scheduler",
        "cli": "the command line",
    }.get(actor, actor)


def _value(key: str, value: Any, currency: str) -> str:
    if key in MONEY_KEYS and isinstance(value, int) and not isinstance(value, bool):
        return money(value, currency)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return number(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "none"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return str(value)


def detail_words(detail: Mapping[str, Any] | None, currency: str, *, skip: tuple[str, ...] = ()) -> str:
    """A detail dict as ``"amount $5.00 · telegram id 4242"``: keys in words, amounts formatted."""
    if not detail:
        return ""
    parts = [
        f"{key.replace('_', ' ')} {_value(key, value, currency)}"
        for key, value in detail.items()
        if key not in skip and value not in (None, "")
    ]
    return " · ".join(parts)


def _who(actor: str | None) -> str:
    return {"user": "the user", "system": "the shop", None: "the shop"}.get(actor, actor_name(actor))


def order_event(event: str, detail: Mapping[str, Any] | None, currency: str, actor: str | None = None) -> str:
    """One order event as a sentence staff can read out to the user."""
    d: Mapping[str, Any] = detail or {}
    who = _who(actor)
    reason = d.get("reason")
    because = f": {reason}" if reason else "."
    amount = next((d[k] for k in ("amount", "refunded", "price") if isinstance(d.get(k), int)), None)
    if event == "created":
        return (
            f"Ordered for {money(d['price'], currency)}; the money is held until a code arrives."
            if isinstance(d.get("price"), int)
            else "Ordered; the money is held until a code arrives."
        )
    if event == "rented":
        return f"Number rented from {d.get('provider') or 'a provider'}."
    if event == "rent_unknown":
        error = d.get("error")
        return (
            f"Renting from {d.get('provider') or 'a provider'} gave no clear answer"
            + (f" ({error})" if error else "")
            + "; the shop checks again before charging."
        )
    if event == "code":
        return "Code arrived; the held money was captured."
    if event == "another_code":
        return f"{who[0].upper() + who[1:]} asked for another code."
    if event == "cancel":
        return f"Cancelled by {who}; the held money went back to the wallet" + because
    if event == "expire":
        return "Expired without a code; the held money went back to the wallet."
    if event == "fail":
        return "Failed; the held money went back to the wallet" + because
    if event == "refund":
        paid = f" {money(amount, currency)}" if amount is not None else ""
        return f"Refunded{paid} to the wallet by {who}" + because
    if event == "hold_voided":
        return "Reconciliation voided a hold left pending; the money went back to the wallet."
    if event == "hold_posted":
        return "Reconciliation captured a hold left pending on a completed order."
    rest = detail_words(d, currency)
    return f"{event.replace('_', ' ').capitalize()}" + (f": {rest}." if rest else ".")


AUDIT_WORDS = {
    "wallet.credit": "Credited {amount} to the wallet",
    "wallet.debit": "Debited {amount} from the wallet",
    "user.block": "Blocked the user",
    "user.unblock": "Unblocked the user",
    "order.cancel": "Cancelled the order; {amount} back to the wallet",
    "order.refund": "Refunded {amount} to the wallet",
    "order.hold_voided": "Voided a hold of {amount} left pending",
    "order.hold_posted": "Captured a hold of {amount} left pending",
    "price.set": "Set a price override",
    "price.clear": "Cleared a price override",
    "staff.create": "Added a staff member",
    "staff.password": "Changed a staff password",
    "staff.role": "Changed a staff role",
    "staff.disable": "Disabled a staff member",
    "staff.enable": "Enabled a staff member",
    "staff.token_create": "Created an API token",
    "staff.token_revoke": "Revoked an API token",
    "price.country.set": "Set a country's markup",
    "price.country.clear": "Cleared a country's markup",
    "broadcast.create": "Started a broadcast",
    "broadcast.pause": "Paused a broadcast",
    "broadcast.resume": "Resumed a broadcast",
    "broadcast.cancel": "Cancelled a broadcast",
}

# Audit detail keys already shown elsewhere on the row (the target column names the user).
_AUDIT_SKIP = ("telegram_id", "idempotency_key", "transfer_id")
_AMOUNT_KEYS = ("amount", "refunded")


def audit_action(action: str, detail: Mapping[str, Any] | None, currency: str) -> str:
    """An audit row's action as a sentence, with its amount: ``"Credited $5.00 to the wallet"``."""
    d: Mapping[str, Any] = detail or {}
    amount = next((d[k] for k in _AMOUNT_KEYS if isinstance(d.get(k), int)), None)
    text = AUDIT_WORDS.get(action)
    if text is None:
        return action.replace(".", ": ").replace("_", " ")
    if "{amount}" in text:
        return text.format(amount=money(amount, currency) if amount is not None else "money")
    return text


def audit_detail(action: str, detail: Mapping[str, Any] | None, currency: str) -> str:
    """What the sentence leaves out, with amounts formatted."""
    said = "{amount}" in AUDIT_WORDS.get(action, "")
    skip = _AUDIT_SKIP + (_AMOUNT_KEYS if said else ())
    return detail_words(detail, currency, skip=skip)


def user_label(telegram_id: int | None, username: str | None = None, first_name: str | None = None) -> str:
    """``4242 · @ann · Ann``: how a user is named on every page."""
    if telegram_id is None:
        return "—"
    parts = [str(telegram_id)]
    if username:
        parts.append(f"@{username}")
    if first_name:
        parts.append(first_name)
    return " · ".join(parts)


# --- overview charts, broadcasts, upstream state ---------------------------------------------

MONEY_BACK_WORDS = {
    "expired": "Expired without a code",
    "cancelled": "Cancelled",
    "failed": "Failed at the provider",
    "staff_refund": "Refunded by staff",
    "other": "Other",
}
TOPUP_WORDS = {"stars": "Telegram Stars", "crypto": "Crypto Pay", "cryptopay": "Crypto Pay", "other": "Other"}
UPSTREAM_WORDS = {
    "none": "Not rented from a provider",
    "active": "Rented, the provider is waiting for the SMS",
    "cancel_pending": "Being cancelled at the provider",
    "cancelled": "Cancelled at the provider",
    "finish_pending": "Being closed at the provider",
    "finished": "Closed at the provider",
}
AUDIENCE_WORDS = {
    "everyone": "Everyone",
    "active": "Active in the last 30 days",
    "service": "Bought a service",
    "language": "Speaks a language",
}
BROADCAST_STATUS_WORDS = {
    "sending": "Sending",
    "paused": "Paused",
    "cancelled": "Cancelled",
    "done": "Done",
}


def money_back_reason(key: str | None) -> str:
    return MONEY_BACK_WORDS.get(key or "", key or "—")


def topup_method(key: str | None) -> str:
    return TOPUP_WORDS.get(key or "", (key or "—").replace("_", " ").capitalize())


def upstream_state(state: str | None) -> str:
    """An order's bookkeeping with its provider, in words (``cancel_pending`` → …)."""
    return UPSTREAM_WORDS.get(state or "", (state or "—").replace("_", " "))


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"
