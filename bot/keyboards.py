"""Inline keyboards and the callback data behind every button.

Callback data is client-controlled input (a modified client can send any bytes for any of
its messages), so it carries only ids of server-side objects — a quote, an order, a page
offset, a catalogue code — never a price, an amount or a user id. Every field is typed and
bounded: anything that does not parse fails the filter and lands in the "button no longer
works" fallback, and every id is re-checked against its owner by core.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast
from uuid import UUID

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from pydantic import Field

from bot import texts
from bot.i18n import LANGUAGE_NAMES, current_locale
from core.catalogue import CountryOffer, ServiceView
from core.orders import OrderView

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


class FavCb(CallbackData, prefix="fv"):
    """Save (``on``) or forget a service and country pair as a favourite."""

    service: str = Code
    country: str = CountryCode
    on: bool = True


class LangCb(CallbackData, prefix="l"):
    lang: str = Field(min_length=2, max_length=5, pattern=r"^[a-z]{2}(_[A-Z]{2})?$")


class TopUpCb(CallbackData, prefix="t"):
    stars: int = Field(ge=0, le=100_000)  # 0 = ask for another amount


def _button(text: str, data: CallbackData) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def _markup(rows: list[list[InlineKeyboardButton]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[r for r in rows if r])


F = TypeVar("F", bound=Callable[..., Any])


def per_locale(func: F) -> F:
    """Cache a keyboard per language and arguments.

    Keyboards that never change are built once per language: every Telegram object is a
    validated pydantic model (about 17 us a button), and they are frozen, so sharing one is
    safe. The language is part of the key because the labels are translated.
    """

    @functools.lru_cache(maxsize=256)
    def cached(locale: str, *args: Any) -> Any:
        return func(*args)

    @functools.wraps(func)
    def wrapper(*args: Any) -> Any:
        return cached(current_locale(), *args)

    return cast(F, wrapper)


@per_locale
def _menu() -> InlineKeyboardButton:
    return _button(texts.BTN_MENU, MenuCb(to="home"))


@per_locale
def _back() -> InlineKeyboardButton:
    return _button(texts.BTN_BACK, ServicesCb(offset=0))


def menu_row() -> list[InlineKeyboardButton]:
    return [_menu()]


@per_locale
def main_menu() -> InlineKeyboardMarkup:
    return _markup(
        [
            [_button(texts.BTN_BUY, MenuCb(to="buy"))],
            [_button(texts.BTN_BALANCE, MenuCb(to="balance"))],
            [_button(texts.BTN_ORDERS, MenuCb(to="orders")), _button(texts.BTN_HELP, MenuCb(to="help"))],
        ]
    )


@per_locale
def back_to_menu() -> InlineKeyboardMarkup:
    return _markup([[_menu()]])


@per_locale
def buy_or_menu() -> InlineKeyboardMarkup:
    return _markup([[_button(texts.BTN_BUY, MenuCb(to="buy"))], [_menu()]])


@per_locale
def top_up_or_menu() -> InlineKeyboardMarkup:
    return _markup([[_button(texts.BTN_BALANCE, MenuCb(to="balance"))], [_menu()]])


@per_locale
def back_to_services() -> InlineKeyboardMarkup:
    return _markup([[_back(), _menu()]])


def languages(current: str) -> InlineKeyboardMarkup:
    """The /language picker: one language a row, each in its own words; ✓ marks the current."""
    rows = [
        [_button(("✓ " if code == current else "") + name, LangCb(lang=code))]
        for code, name in LANGUAGE_NAMES.items()
    ]
    rows.append(menu_row())
    return _markup(rows)


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


def services(
    views: list[ServiceView], *, offset: int, total: int, currency: str, paged: bool = True
) -> InlineKeyboardMarkup:
    buttons = [
        _button(
            texts.service_button(v.name, v.min_price if v.available else None, currency),
            ServiceCb(code=v.code, offset=0),
        )
        for v in views
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    if paged:
        rows.append(_pager(offset, SERVICES_PER_PAGE, total, lambda o: ServicesCb(offset=o)))
    rows.append(menu_row())
    return _markup(rows)


def countries(
    service: str, offers: list[CountryOffer], *, offset: int, currency: str
) -> InlineKeyboardMarkup:
    page = offers[offset : offset + COUNTRIES_PER_PAGE]
    rows = [
        [
            _button(
                texts.country_button(o.country, o.price, o.stock, currency),
                CountryCb(service=service, country=o.country),
            )
        ]
        for o in page
    ]
    rows.append(_pager(offset, COUNTRIES_PER_PAGE, len(offers), lambda o: ServiceCb(code=service, offset=o)))
    rows.append([_back(), _menu()])
    return _markup(rows)


def confirm(service: str, quote_id: str, price: int, currency: str, *, enough: bool) -> InlineKeyboardMarkup:
    first = (
        _button(texts.btn_buy(price, currency), BuyCb(quote=UUID(quote_id)))
        if enough
        else _button(texts.BTN_TOP_UP, MenuCb(to="balance"))
    )
    return _markup([[first], [_button(texts.BTN_BACK, ServiceCb(code=service, offset=0)), *menu_row()]])


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


@per_locale
def balance(packages: tuple[tuple[int, int], ...], currency: str) -> InlineKeyboardMarkup:
    """The top-up packages (fixed by settings, so built once per set)."""
    buttons = [
        _button(texts.btn_package(stars, amount, currency), TopUpCb(stars=stars))
        for stars, amount in packages
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append([_button(texts.BTN_CUSTOM_AMOUNT, TopUpCb(stars=0))])
    rows.append(menu_row())
    return _markup(rows)
