"""What a user pays for a provider's cost — pure functions, no I/O.

Rules, in order: a per-service fixed price wins whatever the cost; otherwise the cost is
marked up by the per-service override markup if there is one, else by the shop's default
(``MARKUP_PERCENT``). The markup rounds *up* to the minor unit (``money.apply_markup``), so a
price never falls below ``cost × (1 + markup)``.

A fixed price can be lower than some providers' cost. Callers that sell must therefore only
use offers whose cost fits the price (``sellable``): the shop never sells at a loss.
"""

from __future__ import annotations

from core.money import MoneyError, apply_markup


def user_price(
    cost: int,
    *,
    markup_percent: int | float,
    override_markup: int | float | None = None,
    fixed_price: int | None = None,
) -> int:
    if fixed_price is not None:
        if fixed_price <= 0:
            raise MoneyError("a fixed price must be greater than zero")
        return int(fixed_price)
    markup = override_markup if override_markup is not None else markup_percent
    return apply_markup(cost, markup)


def sellable(cost: int, price: int) -> bool:
    """An offer can serve a sale at ``price`` only if it costs no more than that."""
    return cost <= price


def max_cost_for_price(
    price: int,
    *,
    markup_percent: int | float,
    override_markup: int | float | None = None,
    fixed_price: int | None = None,
) -> int:
    """The highest provider cost that still earns the configured margin at ``price``.

    The largest ``c`` with ``user_price(c) <= price``; with a fixed price it is the price
    itself (break-even is the floor). Routing can pass this as the provider's max cost to
    keep the margin, or pass ``price`` to allow failover at a thinner margin but never a loss.
    """
    if price < 0:
        raise MoneyError("price cannot be negative")
    if fixed_price is not None:
        return price
    markup = override_markup if override_markup is not None else markup_percent
    # apply_markup is monotonic in cost: binary search the boundary exactly in integers.
    # Capped at ``price``: even a negative markup never lets routing pay more than we charge.
    lo, hi = 0, price
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if apply_markup(mid, markup) <= price:
            lo = mid
        else:
            hi = mid - 1
    return lo
