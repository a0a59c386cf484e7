"""Inline keyboards and the callback data behind every button.

Callback data is client-controlled input (a modified client can send any bytes for any of
its messages), so it carries only ids of server-side objects — a quote, an order, a page
offset, a catalogue code — never a price, an amount or a user id. Every field is typed and
bounded: anything that does not parse fails the filter and lands in the "button no longer
works" fallback, and every id is re-checked against its owner by core.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from pydantic import Field

from bot import layout, texts
from core.catalogue import CountryOffer, ServiceView
from core.orders import OrderView
from core.search import country_name, short_country_name
from core.search_data import service_name

SERVICES_PER_PAGE = 8
COUNTRIES_PER_PAGE = 8
ORDERS_SHOWN = 10
MAX_OFFSET = 10_000

Code = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")
CountryCode = Field(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$")
Offset = Field(ge=0, le=MAX_OFFSET)


class MenuCb(CallbackData, prefix="m"):
    to: Literal["home", "buy", "balance", "orders", "help"]


class ServicesCb(CallbackData, prefix="sp"):
    offset: int = Offset


class ServiceCb(CallbackData, prefix="s"):
    code: str = Code
    offset: int = Offset  # page of the country list


class CountryCb(CallbackData, prefix="c"):
    service: str = Code
    country: str = CountryCode


class BuyCb(CallbackData, prefix="b"):
    quote: UUID


class OrderCb(CallbackData, prefix="o"):
    action: Literal["view", "cancel", "check", "another", "done", "ticket"]
    order: UUID


class AgainCb(CallbackData, prefix="ag"):
    """Buy the same service and country as this order again ("Another number", "Buy again").

    Names the order rather than the pair: it fits Telegram's 64 bytes for any service code,
    and core can steer the new number away from the provider that just failed the buyer.
    """

    order: UUID


class CountriesCb(CallbackData, prefix="cl"):
    """A page of a service's country list in an order: cheapest or most in stock first."""

    service: str = Code
    offset: int = Offset
    sort: Literal["price", "stock"] = "price"


class FavCb(CallbackData, prefix="fv"):
    """Save (``on``) or forget a service and country pair as a favourite."""

    service: str = Code
    country: str = CountryCode
    on: bool = True


class TopUpCb(CallbackData, prefix="t"):
    stars: int = Field(ge=0, le=100_000)  # 0 = ask for another amount


def _button(text: str, data: CallbackData) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def _markup(rows: list[list[InlineKeyboardButton]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[r for r in rows if r])


# Keyboards that never change are built once: every Telegram object is a validated pydantic
# model (about 17 us a button), and they are frozen, so sharing one is safe.
_MENU = _button(texts.BTN_MENU, MenuCb(to="home"))
_MAIN_MENU = _markup(
    [
        [_button(texts.BTN_BUY, MenuCb(to="buy"))],
        [_button(texts.BTN_BALANCE, MenuCb(to="balance"))],
        [_button(texts.BTN_ORDERS, MenuCb(to="orders")), _button(texts.BTN_HELP, MenuCb(to="help"))],
    ]
)
_BACK_TO_MENU = _markup([[_MENU]])
_BUY_OR_MENU = _markup([[_button(texts.BTN_BUY, MenuCb(to="buy"))], [_MENU]])
_TOP_UP_OR_MENU = _markup([[_button(texts.BTN_BALANCE, MenuCb(to="balance"))], [_MENU]])
_BACK = _button(texts.BTN_BACK, ServicesCb(offset=0))
_BACK_TO_SERVICES = _markup([[_BACK, _MENU]])


def menu_row() -> list[InlineKeyboardButton]:
    return [_MENU]


def main_menu() -> InlineKeyboardMarkup:
    return _MAIN_MENU


def back_to_menu() -> InlineKeyboardMarkup:
    return _BACK_TO_MENU


def buy_or_menu() -> InlineKeyboardMarkup:
    return _BUY_OR_MENU


def top_up_or_menu() -> InlineKeyboardMarkup:
    return _TOP_UP_OR_MENU


def back_to_services() -> InlineKeyboardMarkup:
    return _BACK_TO_SERVICES


def _pager(
    offset: int, per_page: int, total: int, make: Callable[[int], CallbackData]
) -> list[InlineKeyboardButton]:
    if total <= per_page:
        return []
    page, pages = offset // per_page + 1, (total + per_page - 1) // per_page
    row = []
    if offset > 0:
        row.append(_button(texts.BTN_PREV, make(max(0, offset - per_page))))
    row.append(_button(texts.btn_page(page, pages), make(offset)))
    if offset + per_page < total:
        row.append(_button(texts.BTN_NEXT, make(offset + per_page)))
    return row


@dataclass(frozen=True, slots=True)
class ShortItem:
    """A favourite or recent pair on top of the service list, at its current price."""

    service: str
    country: str
    saved: bool
    price: int | None  # None: not sold now (the button opens the service's countries)


def services(
    views: list[ServiceView],
    *,
    offset: int,
    total: int,
    currency: str,
    paged: bool = True,
    lang: str = "en",
    shortlist: Sequence[ShortItem] = (),
    extra: Sequence[InlineKeyboardButton] = (),
) -> InlineKeyboardMarkup:
    """Services two to a row where both labels fit a phone, price first if that makes them
    fit, else one to a row; the buyer's favourites and recent pairs first."""
    rows: list[list[InlineKeyboardButton]] = []
    for item in shortlist:
        name = service_name(item.service, texts.service_name(item.service), lang)
        flag = texts.flag(item.country)
        label = layout.first_fitting(
            [texts.shortlist_button(item.saved, n, flag, item.price, currency) for n in _names(name)], 1
        )
        data: CallbackData = (
            CountryCb(service=item.service, country=item.country)
            if item.price is not None
            else ServiceCb(code=item.service, offset=0)
        )
        rows.append([_button(label, data)])
    # One layout per page: two a row when every short label fits, else one a row with the
    # full label ("from"), dropping "from" before shortening the name.
    named = [(v, service_name(v.code, v.name, lang), v.min_price if v.available else None) for v in views]
    short = [texts.service_choice(name, price, currency, short=True) for _v, name, price in named]
    if all(layout.fits(label, 2) for label in short):
        labels = short
    else:
        labels = [
            layout.first_fitting(
                [
                    texts.service_choice(n, price, currency, short=s)
                    for n in _names(name)
                    for s in (False, True)
                ],
                1,
            )
            for _v, name, price in named
        ]
    buttons = [
        _button(label, ServiceCb(code=v.code, offset=0))
        for (v, _n, _p), label in zip(named, labels, strict=True)
    ]
    rows.extend(layout.rows_of(list(zip(labels, buttons, strict=True)), 2))
    if extra:
        rows.append(list(extra))
    if paged:
        rows.append(_pager(offset, SERVICES_PER_PAGE, total, lambda o: ServicesCb(offset=o)))
    rows.append(menu_row())
    return _markup(rows)


def _names(name: str) -> list[str]:
    """A service's name, then its first part ("Google / Gmail / YouTube" → "Google")."""
    first = name.split(" / ")[0]
    return [name, first] if first != name else [name]


def country_label(o: CountryOffer, lang: str, currency: str, *, popular: bool) -> str:
    """The longest label for the offer that fits one to a row."""
    flag = texts.flag(o.country)
    variants = texts.country_choice(
        flag, country_name(o.country, lang), o.price, o.stock, currency, popular=popular
    )
    short = short_country_name(o.country, lang)
    if short != country_name(o.country, lang):
        variants += texts.country_choice(flag, short, o.price, o.stock, currency, popular=popular)
    for label in variants:
        if layout.fits(label, 1):
            return label
    return variants[-1]


def countries(
    service: str,
    offers: list[CountryOffer],
    *,
    offset: int,
    currency: str,
    lang: str = "en",
    popular: frozenset[str] = frozenset(),
    by_stock: bool = False,
    paged: bool = True,
    sortable: bool = True,
) -> InlineKeyboardMarkup:
    """One country a row (flag, name, price and stock need the width); ``offers`` already in
    display order (popular first)."""
    page = offers[offset : offset + COUNTRIES_PER_PAGE] if paged else offers
    rows = [
        [
            _button(
                country_label(o, lang, currency, popular=o.country in popular),
                CountryCb(service=service, country=o.country),
            )
        ]
        for o in page
    ]
    sort: Literal["price", "stock"] = "stock" if by_stock else "price"
    if paged:
        rows.append(
            _pager(
                offset,
                COUNTRIES_PER_PAGE,
                len(offers),
                lambda o: CountriesCb(service=service, offset=o, sort=sort),
            )
        )
    if sortable and len(offers) > 1:
        other: Literal["price", "stock"] = "price" if by_stock else "stock"
        rows.append([_button(texts.btn_sort(by_stock), CountriesCb(service=service, offset=0, sort=other))])
    else:
        rows.append([_button(texts.btn_all_countries(), ServiceCb(code=service, offset=0))])
    rows.append([_BACK, _MENU])
    return _markup(rows)


def no_match(
    suggestions: Sequence[tuple[str, CallbackData]], everything: InlineKeyboardButton
) -> InlineKeyboardMarkup:
    """For "no match": the closest names, then the full list the text promises."""
    rows = [[_button(label, data)] for label, data in suggestions]
    rows.append([everything])
    rows.append(menu_row())
    return _markup(rows)


def all_services_button() -> InlineKeyboardButton:
    return _button(texts.btn_all_services(), ServicesCb(offset=0))


def all_countries_button(service: str) -> InlineKeyboardButton:
    return _button(texts.btn_all_countries(), ServiceCb(code=service, offset=0))


def confirm(
    service: str,
    quote_id: str,
    price: int,
    currency: str,
    *,
    enough: bool,
    country: str | None = None,
    saved: bool = False,
) -> InlineKeyboardMarkup:
    first = (
        _button(texts.btn_buy(price, currency), BuyCb(quote=UUID(quote_id)))
        if enough
        else _button(texts.BTN_TOP_UP, MenuCb(to="balance"))
    )
    fav = (
        [_button(texts.btn_favourite(saved), FavCb(service=service, country=country, on=not saved))]
        if country
        else []
    )
    return _markup([[first], fav, [_button(texts.BTN_BACK, ServiceCb(code=service, offset=0)), *menu_row()]])


def not_charged(service: str) -> InlineKeyboardMarkup:
    return _markup([[_button(texts.BTN_OTHER_COUNTRY, ServiceCb(code=service, offset=0))], menu_row()])


def order(view: OrderView, *, from_list: bool = False) -> InlineKeyboardMarkup:
    oid = UUID(view.id)
    rows: list[list[InlineKeyboardButton]] = []
    if view.status == "waiting":
        rows.append(
            [
                _button(texts.BTN_CANCEL, OrderCb(action="cancel", order=oid)),
                _button(texts.BTN_CHECK, OrderCb(action="check", order=oid)),
            ]
        )
    elif view.status == "reserving":
        rows.append([_button(texts.BTN_CHECK, OrderCb(action="view", order=oid))])
    elif view.status == "completed" and view.can_request_another:
        rows.append([_button(texts.BTN_ANOTHER, OrderCb(action="another", order=oid))])
    elif view.status == "failed":
        rows.append([_button(texts.BTN_OTHER_COUNTRY, ServiceCb(code=view.service, offset=0))])
    last = menu_row()
    if from_list:
        last = [_button(texts.BTN_ORDERS_BACK, MenuCb(to="orders")), *last]
    rows.append(last)
    return _markup(rows)


def orders(views: list[OrderView], currency: str) -> InlineKeyboardMarkup:
    rows = [
        [
            _button(
                texts.order_button(v.status, v.service, v.country, v.price, currency),
                OrderCb(action="view", order=UUID(v.id)),
            )
        ]
        for v in views
    ]
    if not views:
        rows.append([_button(texts.BTN_BUY, MenuCb(to="buy"))])
    rows.append(menu_row())
    return _markup(rows)


@functools.lru_cache(maxsize=8)
def balance(packages: tuple[tuple[int, int], ...], currency: str) -> InlineKeyboardMarkup:
    """The top-up packages (fixed by settings, so built once per set)."""
    buttons = [
        _button(texts.btn_package(stars, amount, currency), TopUpCb(stars=stars))
        for stars, amount in packages
    ]
    rows = layout.rows_of([(b.text, b) for b in buttons], 2)
    rows.append([_button(texts.BTN_CUSTOM_AMOUNT, TopUpCb(stars=0))])
    rows.append(menu_row())
    return _markup(rows)
