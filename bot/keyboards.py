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
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, cast
from uuid import UUID

from aiogram.filters.callback_data import CallbackData
from aiogram.types import CopyTextButton, InlineKeyboardButton, InlineKeyboardMarkup
from pydantic import Field

from bot import layout, texts
from bot.i18n import LANGUAGE_NAMES, current_locale
from core.catalogue import CountryOffer, ServiceView
from core.orders import OrderView
from core.orders.view import number_open
from core.search import country_name, short_country_name
from core.search_data import service_name

SERVICES_PER_PAGE = 8
COUNTRIES_PER_PAGE = 8
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
    """Save (``on``) or forget a service and country pair as a favourite. ``redraw``: the
    confirm screen is drawn again with the star flipped; from an order screen it is not."""

    service: str = Code
    country: str = CountryCode
    on: bool = True
    redraw: bool = True


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HistoryFilter = Literal["all", "active", "completed", "refunded"]
HISTORY_FILTERS: tuple[HistoryFilter, ...] = ("all", "active", "completed", "refunded")
HISTORY_PER_PAGE = 5


class HistCb(CallbackData, prefix="oh"):
    """A page of My orders: the filter and the keyset cursor (microseconds since the
    epoch and the hex id of the last order seen; none for the newest page). A forged
    cursor only picks which of the user's own orders are listed."""

    f: HistoryFilter = "all"
    ts: int = Field(default=0, ge=0, le=10**17)
    id: str = Field(default="", max_length=32, pattern=r"^([0-9a-f]{32})?$")


class ShortfallCb(CallbackData, prefix="sf"):
    """Top up exactly what this quote is missing; the amount is worked out on the server."""

    quote: UUID


class ResumeCb(CallbackData, prefix="rs"):
    """Back to the confirm screen of this quote after a top-up (re-priced if expired)."""

    quote: UUID


class LangCb(CallbackData, prefix="l"):
    lang: str = Field(min_length=2, max_length=5, pattern=r"^[a-z]{2}(_[A-Z]{2})?$")


class TopUpCb(CallbackData, prefix="t"):
    stars: int = Field(ge=0, le=100_000)  # 0 = ask for another amount


class CryptoCb(CallbackData, prefix="cp"):
    """Crypto Pay top-up: ``package`` names a top-up package by its Stars count (the same
    packages and amounts as Stars); 0 = type another amount, -1 = show the choice."""

    package: int = Field(ge=-1, le=100_000)


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
    def cached(locale: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]) -> Any:
        return func(*args, **dict(kwargs))

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return cached(current_locale(), args, tuple(sorted(kwargs.items())))

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
    rows.append([_back(), _menu()])
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
    shortfall: tuple[int, int] | None = None,
    country: str | None = None,
    saved: bool = False,
) -> InlineKeyboardMarkup:
    """Buy when the money is there; otherwise a top-up of exactly the shortfall
    (``(amount, stars)``) that comes back here, and the usual packages. With the country
    known, a star saves the pair as a favourite."""
    quote = UUID(quote_id)
    if enough:
        first = [[_button(texts.btn_buy(price, currency), BuyCb(quote=quote))]]
    elif shortfall is not None:
        amount, stars = shortfall
        first = [
            [_button(texts.btn_top_up_shortfall(amount, stars, currency), ShortfallCb(quote=quote))],
            [_button(texts.btn_other_amounts(), MenuCb(to="balance"))],
        ]
    else:
        first = [[_button(texts.BTN_TOP_UP, MenuCb(to="balance"))]]
    fav = (
        [_button(texts.btn_favourite(saved), FavCb(service=service, country=country, on=not saved))]
        if country
        else []
    )
    return _markup([*first, fav, [_button(texts.BTN_BACK, ServiceCb(code=service, offset=0)), *menu_row()]])


def not_charged(service: str, country: str | None = None) -> InlineKeyboardMarkup:
    again = [_button(texts.btn_try_again(), CountryCb(service=service, country=country))] if country else []
    return _markup(
        [again, [_button(texts.btn_other_country(), ServiceCb(code=service, offset=0))], menu_row()]
    )


def after_top_up(pending: tuple[str, str, str, int] | None, currency: str) -> InlineKeyboardMarkup:
    """Continue to the confirm screen the buyer left (``(quote id, service, country,
    price)``), or start buying."""
    rows = []
    if pending is not None:
        quote_id, service, country, price = pending
        rows.append(
            [_button(texts.btn_continue(service, country, price, currency), ResumeCb(quote=UUID(quote_id)))]
        )
    rows.append([_button(texts.btn_buy_a_number(), MenuCb(to="buy"))])
    rows.append(menu_row())
    return _markup(rows)


def ticket_opened() -> InlineKeyboardMarkup:
    return _markup([[_button(texts.btn_my_orders(), HistCb(f="all"))], menu_row()])


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
                    texts.btn_favourite(False),
                    FavCb(service=view.service, country=view.country, on=True, redraw=False),
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


def history(
    views: list[OrderView],
    *,
    status_filter: HistoryFilter,
    first_page: bool,
    next_cursor: tuple[datetime, str] | None,
) -> InlineKeyboardMarkup:
    """One row per order (open it | buy the same again), the filter, and keyset paging:
    "Older" carries the last row's (created_at, id), "Newest" goes back to the top."""
    rows = [
        [
            _button(texts.history_button(n, v.status, v.phone), OrderCb(action="view", order=UUID(v.id))),
            _button(texts.btn_again_short(), AgainCb(order=UUID(v.id))),
        ]
        for n, v in enumerate(views, 1)
    ]
    pager = []
    if not first_page:
        pager.append(_button(texts.btn_newest(), HistCb(f=status_filter)))
    if next_cursor is not None:
        created, oid = next_cursor
        at = (created - EPOCH) // timedelta(microseconds=1)  # exact: a float would round
        pager.append(_button(texts.btn_older(), HistCb(f=status_filter, ts=at, id=UUID(oid).hex)))
    rows.append(pager)
    names = list(HISTORY_FILTERS)
    filters = [_button(texts.btn_history_filter(f, f == status_filter), HistCb(f=f)) for f in names]
    rows += [filters[:2], filters[2:]]
    if not views:
        rows.append([_button(texts.btn_buy_a_number(), MenuCb(to="buy"))])
    rows.append(menu_row())
    return _markup(rows)


@per_locale
def balance(
    packages: tuple[tuple[int, int], ...], currency: str, crypto: bool = False
) -> InlineKeyboardMarkup:
    """The top-up packages (fixed by settings, so built once per set)."""
    buttons = [
        _button(texts.btn_package(stars, amount, currency), TopUpCb(stars=stars))
        for stars, amount in packages
    ]
    rows = layout.rows_of([(b.text, b) for b in buttons], 2)
    rows.append([_button(texts.BTN_CUSTOM_AMOUNT, TopUpCb(stars=0))])
    if crypto:
        rows.append([_button(texts.btn_pay_crypto(), CryptoCb(package=-1))])
    rows.append(menu_row())
    return _markup(rows)
