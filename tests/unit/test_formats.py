"""Money, counts and country names in the reader's language, from core.money's minor units."""

from __future__ import annotations

import pytest

from bot import formats
from bot.i18n import language_for, use_locale
from core import money

NBSP = "\u00a0"


@pytest.mark.parametrize("minor", [0, 1, 5, 99, 100, 12345, 99999, -250])
def test_english_money_reads_as_core_writes_it(minor: int) -> None:
    assert formats.format_amount(minor, "USD") == money.format_amount(minor, "USD")


def test_english_groups_thousands() -> None:
    assert formats.format_amount(123456789, "USD") == "$1,234,567.89"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "$1,234.50"),
        ("ru", f"1{NBSP}234,50{NBSP}$"),
        ("es", f"1.234,50{NBSP}US$"),
        ("pt_BR", f"US${NBSP}1.234,50"),
        ("id", "US$1.234,50"),
    ],
)
def test_money_in_each_language(locale: str, expected: str) -> None:
    with use_locale(locale):
        assert formats.format_amount(123450, "USD") == expected


def test_digits_come_from_core_not_cldr() -> None:
    # JPY has no minor unit, BHD three: the ledger's integers are shown exactly.
    with use_locale("en"):
        assert formats.format_amount(1234, "JPY") == "¥1,234"
        assert formats.format_amount(1234, "BHD") == "BHD1.234"
        assert formats.format_amount(250, "XTR") == money.format_amount(250, "XTR")  # not in CLDR


def test_counts_and_country_names() -> None:
    with use_locale("ru"):
        assert formats.format_number(3411) == f"3{NBSP}411"
        assert formats.country_name("DE") == "Германия"
    with use_locale("pt_BR"):
        assert formats.country_name("DE") == "Alemanha"
    assert formats.country_name("GB") == "United Kingdom"  # outside any update: English
    assert formats.country_name("XX") == "XX"


@pytest.mark.parametrize(
    ("client", "language"),
    [
        ("pt-br", "pt_BR"),
        ("pt-PT", "pt_BR"),
        ("pt", "pt_BR"),
        ("ru", "ru"),
        ("es-419", "es"),
        ("id", "id"),
        ("in", "id"),
        ("en-GB", "en"),
        ("de", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_client_language_to_shop_language(client: str | None, language: str) -> None:
    assert language_for(client) == language
