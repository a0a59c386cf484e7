"""Money parsing, formatting and markup: properties over many inputs, plus the edge cases."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.money import (
    MoneyError,
    apply_markup,
    exponent,
    format_amount,
    money_json,
    parse_amount,
    parse_positive_amount,
)

CURRENCIES = st.sampled_from(["USD", "EUR", "RUB", "JPY", "XTR", "KWD", "CHF"])
MINOR = st.integers(min_value=0, max_value=10**12 - 1)  # 12 whole digits at most


def _plain(minor: int, currency: str) -> str:
    """The formatted amount without symbol or code, as a user would type it back."""
    return format_amount(minor, currency, symbol=False).rsplit(" ", 1)[0]


@given(MINOR, CURRENCIES)
@example(0, "USD")
@example(5, "USD")
@example(100, "KWD")
def test_format_then_parse_round_trips(minor, currency):
    assert parse_amount(_plain(minor, currency), currency) == minor


@given(MINOR, CURRENCIES)
def test_formatting_shows_exactly_the_currency_exponent(minor, currency):
    text = _plain(minor, currency)
    exp = exponent(currency)
    if exp:
        whole, frac = text.split(".")
        assert len(frac) == exp
    else:
        assert "." not in text
    assert format_amount(-minor, currency).startswith("-") == (minor > 0)


@given(
    st.integers(min_value=0, max_value=10**12 - 1),
    st.integers(min_value=0, max_value=99),
    st.sampled_from([".", ","]),
)
def test_parse_accepts_both_decimal_separators(whole, cents, sep):
    assert parse_amount(f"{whole}{sep}{cents:02d}") == whole * 100 + cents
    assert parse_amount(f" {whole} ") == whole * 100


@given(st.text(max_size=20))
def test_parse_never_crashes_other_than_money_error(text):
    try:
        value = parse_amount(text)
    except MoneyError:
        return
    assert isinstance(value, int) and value >= 0
    assert parse_amount(_plain(value, "USD")) == value


@pytest.mark.parametrize(
    "text, currency",
    [
        ("1.005", "USD"),
        ("1.5", "JPY"),
        ("-1", "USD"),
        ("1e3", "USD"),
        ("", "USD"),
        ("abc", "USD"),
        ("1.2.3", "USD"),
        ("1234567890123", "USD"),
        ("0x10", "USD"),
        ("$5", "USD"),
        ("1.0001", "KWD"),
        (".5", "USD"),
    ],
)
def test_parse_refuses(text, currency):
    with pytest.raises(MoneyError):
        parse_amount(text, currency)


def test_parse_examples():
    assert parse_amount("5") == 500
    assert parse_amount("5.5") == 550
    assert parse_amount("5,05") == 505
    assert parse_amount("1.234", "KWD") == 1234
    assert parse_amount("1000", "JPY") == 1000
    assert parse_positive_amount("0.01") == 1
    for zero in ("0", "0.00"):
        with pytest.raises(MoneyError):
            parse_positive_amount(zero)


def test_format_examples():
    assert format_amount(1234) == "$12.34"
    assert format_amount(-5) == "-$0.05"
    assert format_amount(1234, "CHF") == "12.34 CHF"
    assert format_amount(50, "XTR") == "⭐50"
    assert money_json(1234) == {"minor": 1234, "formatted": "$12.34"}


MARKUP = st.one_of(
    st.integers(min_value=-100, max_value=1000),
    st.decimals(min_value=-100, max_value=1000, places=2).map(float),
)


@given(st.integers(min_value=0, max_value=10**9), MARKUP)
@example(7, 20)  # 8.4 → 9
@example(1, 0.01)
@example(100, -100)
@example(3, 33.33)
def test_apply_markup_never_under_charges_and_rounds_up_by_less_than_one_unit(cost, markup):
    bp = round(float(markup) * 100)
    owed = cost * (10_000 + bp)  # the exact price × 10,000
    price = apply_markup(cost, markup)
    assert isinstance(price, int)
    assert price * 10_000 >= owed  # never under-charges
    assert (price - 1) * 10_000 < owed  # one unit less would under-charge


def test_apply_markup_examples_and_refusals():
    assert apply_markup(7, 20) == 9
    assert apply_markup(100, 20) == 120
    assert apply_markup(0, 20) == 0
    assert apply_markup(100, 0) == 100
    with pytest.raises(MoneyError):
        apply_markup(-1, 20)
    with pytest.raises(MoneyError):
        apply_markup(100, -100.01)
