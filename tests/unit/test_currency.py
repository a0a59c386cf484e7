"""Minor units come from Babel's ISO 4217 data, and ``SHOP_CURRENCY`` must be in it."""

from __future__ import annotations

import pytest

from core.config import ConfigError, load_settings
from core.money import MoneyError, exponent, format_amount, parse_amount
from numbershop.cli import main


@pytest.mark.parametrize(
    ("code", "digits"), [("JPY", 0), ("USD", 2), ("KWD", 3), ("BHD", 3), ("CLP", 0), ("EUR", 2), ("XTR", 0)]
)
def test_exponents_are_the_iso_minor_units(code: str, digits: int) -> None:
    assert exponent(code) == digits
    assert exponent(code.lower()) == digits


def test_a_three_digit_currency_parses_and_formats_with_three_digits() -> None:
    # TND (Tunisian dinar) has three digits; the old hand-made table said two.
    assert exponent("TND") == 3
    assert parse_amount("1.005", "TND") == 1005
    assert format_amount(1005, "TND") == "1.005 TND"


def test_an_unknown_code_has_no_exponent() -> None:
    with pytest.raises(MoneyError, match="XYZ"):
        exponent("XYZ")


def test_shop_currency_must_be_an_iso_code() -> None:
    assert load_settings(SHOP_CURRENCY="kwd").SHOP_CURRENCY == "KWD"
    with pytest.raises(ConfigError) as refused:
        load_settings(SHOP_CURRENCY="XYZ")
    line = str(refused.value)
    assert line.startswith("SHOP_CURRENCY:") and "XYZ" in line and "\n" not in line


def test_the_cli_refuses_an_unknown_shop_currency_with_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("SHOP_CURRENCY", "XYZ")
    code = main(["wallet", "show", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "SHOP_CURRENCY" in lines[0] and "XYZ" in lines[0], err
