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
from datetime import UTC, datetime, timedelta
from typing import Literal
from uuid import UUID

from aiogram.filters.callback_data import CallbackData
from aiogram.types import CopyTextButton, InlineKeyboardButton, InlineKeyboardMarkup
from pydantic import Field

from bot import texts
from core.catalogue import CountryOffer, ServiceView
from core.orders import OrderView
from core.orders.view import number_open

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
    rows.append([_BACK, _MENU])
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


TICKET_WINDOW = timedelta(minutes=30)  # "Code didn't work" is offered this long after the code


def _copy(text: str, value: str) -> InlineKeyboardButton | None:
    """A button that copies ``value`` (Bot API CopyTextButton: 1-256 characters)."""
    if not 1 <= len(value) <= 256:
        return None
    return InlineKeyboardButton(text=text, copy_text=CopyTextButton(text=value))


def _row(*buttons: InlineKeyboardButton | None) -> list[InlineKeyboardButton]:
    return [b for b in buttons if b is not None]


def _copy_number(view: OrderView, *, national: bool) -> list[InlineKeyboardButton]:
    if not view.phone:
        return []
    full, calling, rest = texts.split_phone(view.phone, view.country)
    return _row(
        _copy(texts.btn_copy_number(), full),
        _copy(texts.btn_copy_national(calling), rest) if national and calling else None,
    )


def order(view: OrderView, *, from_list: bool = False, now: datetime | None = None) -> InlineKeyboardMarkup:
    """The order screen's buttons: what the buyer can do next in each state. A label that
    would be cut at phone width (390 px) gets a row of its own."""
    oid = UUID(view.id)
    now = now or datetime.now(UTC)
    rows: list[list[InlineKeyboardButton]] = []
    if view.status == "waiting":
        rows.append([_button(texts.BTN_CANCEL, OrderCb(action="cancel", order=oid))])
        rows.append([_button(texts.BTN_CHECK, OrderCb(action="check", order=oid))])
        rows.append(_copy_number(view, national=True))
    elif view.status == "reserving":
        rows.append([_button(texts.BTN_CHECK, OrderCb(action="view", order=oid))])
    elif view.status == "completed":
        open_ = number_open(view, now)
        copies = _row(_copy(texts.btn_copy_code(), view.code) if view.code else None)
        number = _copy_number(view, national=False)
        # Side by side under the open number's wider text; stacked under the short closed one.
        rows.extend([copies + number] if open_ else [copies, number])
        if open_:
            rows.append(
                _row(
                    _button(texts.btn_another_code(), OrderCb(action="another", order=oid))
                    if view.can_request_another
                    else None,
                    _button(texts.btn_done(), OrderCb(action="done", order=oid)),
                )
            )
        if now - (view.closed_at or view.updated_at) <= TICKET_WINDOW:
            rows.append([_button(texts.btn_code_didnt_work(), OrderCb(action="ticket", order=oid))])
        rows.append(
            [
                _button(texts.btn_buy_again(), AgainCb(order=oid)),
                _button(
                    texts.btn_favourite(False), FavCb(service=view.service, country=view.country, on=True)
                ),
            ]
        )
    elif view.status in ("cancelled", "expired", "failed"):
        rows.append([_button(texts.btn_another_number(), AgainCb(order=oid))])
        rows.append([_button(texts.btn_other_country(), ServiceCb(code=view.service, offset=0))])
    elif view.status == "refunded":
        rows.append([_button(texts.btn_buy_again(), AgainCb(order=oid))])
    last = menu_row()
    if from_list:
        last = [_button(texts.BTN_ORDERS_BACK, MenuCb(to="orders")), *last]
    rows.append(last)
    return _markup(rows)


def code_message(order_id: str, code: str | None) -> InlineKeyboardMarkup:
    """Under each code message: copy that code, and buy the same number again."""
    return _markup(
        [
            _row(_copy(texts.btn_copy_code(), code) if code else None),
            [_button(texts.btn_buy_again(), AgainCb(order=UUID(order_id)))],
        ]
    )


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
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append([_button(texts.BTN_CUSTOM_AMOUNT, TopUpCb(stars=0))])
    rows.append(menu_row())
    return _markup(rows)
