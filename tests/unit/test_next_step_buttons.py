"""The next-step buttons' arithmetic and limits: the shortfall top-up in whole Stars never
leaves the buyer short, and every new callback fits Telegram's 64 bytes with an exact
keyset cursor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from bot import keyboards
from bot.handlers.buy import shortfall_top_up
from bot.invoices import MAX_STARS, credit_for_stars


def _shop(stars_per_unit: float, currency: str = "USD") -> SimpleNamespace:
    return SimpleNamespace(stars_per_unit=stars_per_unit, currency=currency)


@pytest.mark.parametrize("rate", [50, 33.3, 77, 1.5])
@pytest.mark.parametrize("missing", [1, 2, 3, 27, 99, 100, 101, 12_345])
def test_shortfall_is_the_fewest_stars_that_cover_it(rate, missing) -> None:
    shop = _shop(rate)
    found = shortfall_top_up(shop, missing)
    assert found is not None
    amount, stars = found
    assert stars >= 1 and amount == credit_for_stars(stars, rate, "USD")
    assert amount >= missing
    assert stars == 1 or credit_for_stars(stars - 1, rate, "USD") < missing  # not one Star more than needed


def test_shortfall_respects_the_smallest_top_up_and_one_invoice() -> None:
    shop = _shop(0.5)  # one Star buys two dollars: the smallest top-up is 200 cents
    assert shortfall_top_up(shop, 1) == (200, 1)
    assert shortfall_top_up(_shop(50), credit_for_stars(MAX_STARS, 50, "USD") + 1) is None


def test_history_callback_fits_and_its_cursor_is_exact() -> None:
    created = datetime(2026, 12, 4, 23, 59, 59, 999_999, tzinfo=UTC)
    oid = str(uuid.uuid4())
    markup = keyboards.history([], status_filter="refunded", first_page=False, next_cursor=(created, oid))
    datas = [b.callback_data for row in markup.inline_keyboard for b in row if b.callback_data]
    assert all(len(d.encode()) <= 64 for d in datas), datas
    older = next(d for d in datas if keyboards.HistCb.unpack(d).id)
    parsed = keyboards.HistCb.unpack(older)
    assert keyboards.EPOCH + timedelta(microseconds=parsed.ts) == created
    assert str(uuid.UUID(parsed.id)) == oid and parsed.f == "refunded"
    for data in (
        keyboards.ResumeCb(quote=uuid.uuid4()).pack(),
        keyboards.ShortfallCb(quote=uuid.uuid4()).pack(),
    ):
        assert len(data.encode()) <= 64


@pytest.mark.parametrize("bad", ["oh:all:5:xyz", "oh:nope:0:", "oh:all:-1:", "oh:all:0:" + "g" * 32])
def test_forged_history_callbacks_do_not_parse(bad) -> None:
    with pytest.raises(ValueError):
        keyboards.HistCb.unpack(bad)
