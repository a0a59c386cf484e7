"""Numbers, money and names the way the reader's language writes them (Babel, CLDR).

``core.money`` keeps amounts as integer minor units and owns their exponent; this module
only chooses how an amount looks to a reader: ``$1,234.50`` in English, ``1 234,50 $`` in
Russian, ``US$ 1.234,50`` in Brazilian Portuguese. The digits after the separator are
always the currency's minor unit from ``core.money`` (never CLDR's idea of it), so what a
buyer reads is exactly what the ledger holds.
"""

from __future__ import annotations

import copy
import functools
from decimal import Decimal

from babel import Locale
from babel.numbers import NumberPattern, format_decimal

from bot.i18n import _, current_locale
from core import search_data
from core.catalogue_data import COUNTRIES_BY_CODE
from core.money import exponent, iso_currencies
from core.money import format_amount as plain_amount

# Service names that differ by language, locale -> service code -> name. Brand names stay as
# they are; the search feature's per-language names can be merged in here.
SERVICE_NAMES: dict[str, dict[str, str]] = search_data.SERVICE_NAMES  # where a language differs


@functools.lru_cache(maxsize=16)
def _locale(name: str) -> Locale:
    return Locale.parse(name)


@functools.lru_cache(maxsize=64)
def _money_pattern(locale: str, digits: int) -> NumberPattern:
    pattern: NumberPattern = copy.copy(_locale(locale).currency_formats["standard"])
    pattern.frac_prec = (digits, digits)
    return pattern


def format_amount(minor: int, currency: str = "USD") -> str:
    """Minor units as money in the current language (``core.money`` decides the digits)."""
    code = currency.upper()
    if code not in iso_currencies():  # Telegram Stars (XTR): CLDR has no symbol for it
        return plain_amount(minor, currency)
    locale = current_locale()
    exp = exponent(code)
    value = Decimal(int(minor)).scaleb(-exp)
    pattern = _money_pattern(locale, exp)
    return str(pattern.apply(value, _locale(locale), currency=code, currency_digits=False))


def format_number(value: int) -> str:
    """A count with the language's digit grouping (``1,234``, ``1 234``, ``1.234``)."""
    return format_decimal(value, locale=_locale(current_locale()))


def country_name(code: str) -> str:
    """The country's name in the current language from CLDR; the catalogue's English name
    (or the code) when CLDR has none."""
    name = _locale(current_locale()).territories.get(code)
    if name:
        return str(name)
    data = COUNTRIES_BY_CODE.get(code)
    return data.name if data else code


def local_service_name(code: str) -> str | None:
    """A service's name where the language writes it differently; None keeps the brand."""
    if code == "other":
        return _("Any other service")
    return SERVICE_NAMES.get(current_locale(), {}).get(code)
