from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.money import MoneyError
from core.pricing import max_cost_for_price, sellable, user_price


def test_default_markup_rounds_up_to_the_minor_unit():
    assert user_price(100, markup_percent=20) == 120
    assert user_price(7, markup_percent=20) == 9  # 8.4 → 9, never 8
    assert user_price(0, markup_percent=20) == 0


def test_fractional_markup_is_exact():
    assert user_price(1000, markup_percent=12.5) == 1125
    assert user_price(3, markup_percent=33.33) == 4  # 3.9999 → 4


def test_override_markup_replaces_the_default():
    assert user_price(100, markup_percent=20, override_markup=50) == 150
    assert user_price(100, markup_percent=20, override_markup=0) == 100


def test_fixed_price_wins_over_everything():
    assert user_price(100, markup_percent=20, override_markup=50, fixed_price=99) == 99
    assert user_price(5, markup_percent=20, fixed_price=250) == 250


def test_fixed_price_must_be_positive():
    with pytest.raises(MoneyError):
        user_price(100, markup_percent=20, fixed_price=0)


def test_a_fixed_price_below_cost_is_not_sellable():
    price = user_price(300, markup_percent=20, fixed_price=250)
    assert not sellable(300, price)
    assert sellable(250, price)


def test_max_cost_for_price_keeps_the_margin():
    assert max_cost_for_price(120, markup_percent=20) == 100
    assert max_cost_for_price(9, markup_percent=20) == 7  # 7 → 9; 8 → 10
    assert max_cost_for_price(150, markup_percent=20, override_markup=50) == 100
    assert max_cost_for_price(250, markup_percent=20, fixed_price=250) == 250


costs = st.integers(min_value=0, max_value=10**9)
markups = st.one_of(
    st.integers(min_value=0, max_value=1000),
    st.floats(min_value=0, max_value=1000, allow_nan=False).map(lambda f: round(f, 2)),
)


@given(cost=costs, markup=markups)
def test_price_never_below_cost_times_one_plus_markup(cost, markup):
    price = user_price(cost, markup_percent=markup)
    exact = Fraction(cost) * (1 + Fraction(str(markup)) / 100)
    assert price >= exact
    assert price - exact < 1  # and never more than one minor unit above it


@given(cost=costs, default=markups, override=markups)
def test_override_markup_is_used_instead_of_the_default(cost, default, override):
    price = user_price(cost, markup_percent=default, override_markup=override)
    assert price == user_price(cost, markup_percent=override)
    assert price >= cost


@given(cost=costs, markup=markups)
def test_max_cost_inverts_user_price(cost, markup):
    price = user_price(cost, markup_percent=markup)
    best = max_cost_for_price(price, markup_percent=markup)
    assert best >= cost
    assert user_price(best, markup_percent=markup) <= price
    assert user_price(best + 1, markup_percent=markup) > price or best == price
