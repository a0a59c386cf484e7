"""Converting provider-currency prices to shop minor units and back, never in the shop's loss.

A provider quotes decimal amounts in its own currency (SMS-Activate: RUB, DaisySMS and
TextVerified: USD). A configured *rate* says how many shop-currency units one provider unit
is worth: ``shop = provider × rate``. Costs are rounded **up** to the shop's minor unit (the
shop never under-counts what it pays), and a max price sent upstream is rounded **down** to the
provider's precision (the provider can never charge more than the user's confirmed price), so
``to_shop_minor(to_provider_max(m)) <= m`` for every m.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

from core.money import exponent


class CostRate:
    def __init__(self, rate: float | str | Decimal, shop_currency: str, provider_decimals: int = 2) -> None:
        self.rate = Decimal(str(rate))
        if not self.rate.is_finite() or self.rate <= 0:
            raise ValueError("a cost rate must be a positive number")
        self.shop_currency = shop_currency
        self._shop_quantum = Decimal(1).scaleb(-exponent(shop_currency))
        self._provider_quantum = Decimal(1).scaleb(-provider_decimals)

    def to_shop_minor(self, provider_amount: object) -> int:
        """A provider price (e.g. ``"12.50"``) as shop minor units, rounded up."""
        amount = decimal(provider_amount)
        shop = (amount * self.rate).quantize(self._shop_quantum, rounding=ROUND_CEILING)
        return int(shop.scaleb(exponent(self.shop_currency)))

    def to_provider_max(self, shop_minor: int) -> Decimal:
        """The most we may let the provider charge for ``shop_minor``, rounded down."""
        shop = Decimal(int(shop_minor)).scaleb(-exponent(self.shop_currency))
        return (shop / self.rate).quantize(self._provider_quantum, rounding=ROUND_FLOOR)


def decimal(value: object) -> Decimal:
    """A non-negative finite Decimal from a JSON number or numeric string; ValueError otherwise."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not an amount: {value!r}")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not result.is_finite() or result < 0:
        raise ValueError(f"not an amount: {value!r}")
    return result


def format_provider_amount(value: Decimal) -> str:
    """``Decimal('45.40')`` → ``"45.4"``; never scientific notation."""
    text = format(value.normalize(), "f")
    return text
