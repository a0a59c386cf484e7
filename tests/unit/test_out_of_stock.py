"""One ``OutOfStock`` for the whole shop: a provider's and the catalogue's are the same class,
so the bot says "sold out" for both and the breaker never counts either."""

from __future__ import annotations

import core.errors
from bot import errors as bot_errors
from bot import texts
from core.errors import ShopError
from core.providers.errors import BusinessError, OutOfStock, ProviderError


def test_there_is_one_out_of_stock_class() -> None:
    assert not hasattr(core.errors, "OutOfStock")
    assert issubclass(OutOfStock, ShopError) and issubclass(OutOfStock, BusinessError)


def test_the_bot_says_sold_out_whoever_raised_it() -> None:
    from_provider = OutOfStock("NO_NUMBERS", provider="alpha")
    from_catalogue = OutOfStock("no numbers for whatsapp in GB right now")
    assert bot_errors.sentence(from_provider) == texts.OUT_OF_STOCK
    assert bot_errors.sentence(from_catalogue) == texts.OUT_OF_STOCK
    assert bot_errors.sentence(ProviderError("boom")) == texts.PROVIDER_DOWN
    assert bot_errors.is_expected(from_provider)
