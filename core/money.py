"""Money is an integer count of the shop currency's minor unit.

Every amount in the system is an ``int`` of minor units (cents for USD). This module is the
only place that turns text into amounts and amounts into text, so rounding rules live here
and nowhere else.
"""

from __future__ import annotations

import re
from functools import lru_cache

from babel.numbers import get_currency_precision, list_currencies

# Not ISO 4217 but a currency we meet: Telegram Stars, whole units only. Wallets are never in
# it (``SHOP_CURRENCY`` must be an ISO code); it is here so Stars amounts format and convert.
_NON_ISO_EXPONENTS = {"XTR": 0}
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "RUB": "₽", "XTR": "⭐"}
_AMOUNT_RE = re.compile(r"^\s*([0-9]{1,12})(?:[.,]([0-9]+))?\s*$")


class MoneyError(ValueError):
    """Text that is not a valid non-negative amount in the shop currency."""


@lru_cache(maxsize=1)
def iso_currencies() -> frozenset[str]:
    """Every currency code in Babel's ISO 4217 (CLDR) data."""
    return frozenset(list_currencies())


def is_currency(code: str) -> bool:
    """An ISO 4217 code Babel knows (``XTR`` is not one: it is Telegram's own)."""
    return code.upper() in iso_currencies()


@lru_cache(maxsize=64)
def exponent(currency: str) -> int:
    """Digits after the decimal point of ``currency``'s minor unit (USD 2, JPY 0, KWD 3).

    From Babel's CLDR currency data rather than a table of our own, so every ISO code is
    right; a code Babel does not know is refused (its default of 2 would silently invent a
    minor unit for a typo)."""
    code = currency.upper()
    if code in _NON_ISO_EXPONENTS:
        return _NON_ISO_EXPONENTS[code]
    if not is_currency(code):
        raise MoneyError(f"{currency!r} is not an ISO 4217 currency code")
    return int(get_currency_precision(code))


def parse_amount(text: str, currency: str = "USD") -> int:
    """Parse ``"5"``, ``"5.00"`` or ``"5,5"`` into minor units; refuse anything else.

    More fractional digits than the currency has is an error, not a rounding: a staff member
    typing ``1.005`` meant something we cannot honour exactly.
    """
    match = _AMOUNT_RE.match(text or "")
    if not match:
        raise MoneyError(f"{text!r} is not an amount; write it like 5.00")
    whole, frac = match.group(1), match.group(2) or ""
    exp = exponent(currency)
    if len(frac) > exp:
        if exp == 0:
            raise MoneyError(f"{text!r}: {currency} has no fractional unit")
        raise MoneyError(f"{text!r} has more than {exp} decimal places")
    scale: int = 10**exp
    return int(whole) * scale + int(frac.ljust(exp, "0") or 0)


def parse_positive_amount(text: str, currency: str = "USD") -> int:
    amount = parse_amount(text, currency)
    if amount <= 0:
        raise MoneyError(f"{text!r}: the amount must be greater than zero")
    return amount


def format_amount(minor: int, currency: str = "USD", *, symbol: bool = True) -> str:
    """``1234`` → ``"$12.34"``; negative amounts keep their sign in front."""
    exp = exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(int(minor)), 10**exp)
    body = f"{whole}.{frac:0{exp}d}" if exp else str(whole)
    cur = currency.upper()
    if symbol and cur in _SYMBOLS:
        return f"{sign}{_SYMBOLS[cur]}{body}"
    return f"{sign}{body} {cur}"


def money_json(minor: int, currency: str = "USD") -> dict[str, object]:
    """How amounts appear in JSON output: the integer and its formatted string."""
    return {"minor": int(minor), "formatted": format_amount(minor, currency)}


def apply_markup(cost: int, markup_percent: int | float) -> int:
    """User price from provider cost: ``cost × (1 + markup)`` rounded *up* to the minor unit.

    Integer arithmetic on basis points so that 20 % of 7 cents is exactly 8.4 → 9, never a
    float artefact like 8.400000001 → 9 or 8.39999 → 9 by luck.
    """
    if cost < 0:
        raise MoneyError("cost cannot be negative")
    bp = round(float(markup_percent) * 100)  # basis points
    if bp < -10_000:
        raise MoneyError("markup below -100% would make prices negative")
    num = cost * (10_000 + bp)
    return -(-num // 10_000)
