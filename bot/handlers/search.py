"""Browsing and search: the service list, a service's country list, typed text, favourites.

What a typed message means depends on the list the buyer is on: on a country list it names
a country (in their language or English, an ISO code or a dialling code), anywhere else a
service. Which list that is lives in the conversation state (``Browse.countries`` with the
service in its data), so with several workers the one taking the next message knows it.

Only an unambiguous exact match (a code, alias or full name) opens a service or a country by
itself; anything looser is shown as a list to tap, and "no match" offers the closest names
and the full list. Search itself is pure and precomputed (``core.search``).
"""

from __future__ import annotations

from aiogram import F
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, User
from aiogram.utils.i18n import I18n

from bot import keyboards, texts
from bot.context import ShopContext, send_screen, show
from bot.handlers import HandlerSet
from bot.handlers.buy import confirm_screen
from bot.middlewares import Reply
from core import catalogue, favourites
from core.catalogue import CountryOffer, ServiceView
from core.catalogue_data import SERVICE_CODES
from core.errors import InvalidInput
from core.search import search_countries, search_services, supported
from core.search_data import service_name

handlers = HandlerSet("search")

MAX_SEARCH = 32
SHOWN = 8
Screen = tuple[str, InlineKeyboardMarkup]


class Browse(StatesGroup):
    countries = State()  # data: service, sort


def language_of(user: User | None) -> str:
    """The buyer's language: the one the i18n context carries, else Telegram's."""
    i18n = I18n.get_current(no_error=True)
    if i18n is not None:
        return supported(i18n.current_locale)
    return supported(user.language_code if user else None)


# --- data (shared by everyone, cached a few seconds) --------------------------------------


async def all_services(shop: ShopContext) -> list[ServiceView]:
    async def load() -> list[ServiceView]:
        views: list[ServiceView] = []
        while True:
            page, total = await catalogue.services_page(
                shop.core.db, offset=len(views), limit=catalogue.MAX_PAGE, markup_percent=shop.markup_percent
            )
            views.extend(page)
            if not page or len(views) >= total:
                return views

    return await shop.catalogue_cache.get(("services-all",), load)


async def offers_of(shop: ShopContext, service: str) -> list[CountryOffer]:
    async def load() -> list[CountryOffer]:
        return await catalogue.countries_of(shop.core.db, service, markup_percent=shop.markup_percent)

    return await shop.catalogue_cache.get(("countries", service), load)


async def popular_of(shop: ShopContext, service: str) -> list[str]:
    async def load() -> list[str]:
        return await favourites.popular_countries(shop.core.db, service=service, now=shop.core.clock.now())

    return await shop.catalogue_cache.get(("popular", service), load)


# --- screens ------------------------------------------------------------------------------


async def services_screen(
    shop: ShopContext, offset: int = 0, *, user_id: int | None = None, lang: str = "en"
) -> Screen:
    per = keyboards.SERVICES_PER_PAGE
    views = await all_services(shop)
    if offset >= len(views):
        offset = 0
    shortlist: list[keyboards.ShortItem] = []
    if user_id is not None and offset == 0:
        for pair in await favourites.shortlist(shop.core.db, user_id=user_id):
            price = next(
                (o.price for o in await offers_of(shop, pair.service) if o.country == pair.country), None
            )
            shortlist.append(keyboards.ShortItem(pair.service, pair.country, pair.saved, price))
    pages = max(1, (len(views) + per - 1) // per)
    return (
        texts.services_intro(offset // per + 1, pages, bool(shortlist)),
        keyboards.services(
            views[offset : offset + per],
            offset=offset,
            total=len(views),
            currency=shop.currency,
            lang=lang,
            shortlist=shortlist,
        ),
    )


def ordered(offers: list[CountryOffer], popular: list[str], *, by_stock: bool) -> list[CountryOffer]:
    """Popular countries first (most bought first), then the rest by price or by stock."""
    rank = {c: i for i, c in enumerate(popular)}
    top = sorted((o for o in offers if o.country in rank), key=lambda o: rank[o.country])
    rest = [o for o in offers if o.country not in rank]
    if by_stock:
        rest.sort(key=lambda o: (-o.stock, o.price, o.country))
    else:
        rest.sort(key=lambda o: (o.price, -o.stock, o.country))
    return top + rest


async def countries_screen(
    shop: ShopContext, service: str, offset: int = 0, *, lang: str = "en", by_stock: bool = False
) -> Screen:
    async def render() -> Screen:
        offers = await offers_of(shop, service)
        name = service_name(service, texts.service_name(service), lang)
        if not offers:
            return texts.no_countries(service), keyboards.back_to_services()
        popular = [c for c in await popular_of(shop, service) if any(o.country == c for o in offers)]
        listed = ordered(offers, popular, by_stock=by_stock)
        per = keyboards.COUNTRIES_PER_PAGE
        start = offset if offset < len(listed) else 0
        pages = (len(listed) + per - 1) // per
        return (
            texts.countries_intro(name, start // per + 1, pages, popular=bool(popular), by_stock=by_stock),
            keyboards.countries(
                service,
                listed,
                offset=start,
                currency=shop.currency,
                lang=lang,
                popular=frozenset(popular),
                by_stock=by_stock,
            ),
        )

    return await shop.catalogue_cache.get(("countries-screen", service, offset, lang, by_stock), render)


async def _open_countries(
    shop: ShopContext, state: FSMContext, service: str, offset: int, lang: str, by_stock: bool | None = None
) -> Screen:
    if by_stock is None:
        by_stock = (await state.get_data()).get("sort") == "stock"
    await state.set_state(Browse.countries)
    await state.update_data(service=service, sort="stock" if by_stock else "price")
    return await countries_screen(shop, service, offset, lang=lang, by_stock=by_stock)


# --- browsing -----------------------------------------------------------------------------


@handlers.callback_query(keyboards.MenuCb.filter(F.to == "buy"))
async def on_buy_menu(query: CallbackQuery, shop: ShopContext, state: FSMContext, user_id: int) -> None:
    await state.set_state(None)
    await show(
        query.message, *await services_screen(shop, user_id=user_id, lang=language_of(query.from_user))
    )


@handlers.callback_query(keyboards.ServicesCb.filter())
async def on_services_page(
    query: CallbackQuery,
    callback_data: keyboards.ServicesCb,
    shop: ShopContext,
    state: FSMContext,
    user_id: int,
) -> None:
    await state.set_state(None)
    lang = language_of(query.from_user)
    await show(query.message, *await services_screen(shop, callback_data.offset, user_id=user_id, lang=lang))


@handlers.callback_query(keyboards.ServiceCb.filter())
async def on_service(
    query: CallbackQuery, callback_data: keyboards.ServiceCb, shop: ShopContext, state: FSMContext
) -> None:
    lang = language_of(query.from_user)
    await show(
        query.message, *await _open_countries(shop, state, callback_data.code, callback_data.offset, lang)
    )


@handlers.callback_query(keyboards.CountriesCb.filter())
async def on_countries_page(
    query: CallbackQuery, callback_data: keyboards.CountriesCb, shop: ShopContext, state: FSMContext
) -> None:
    lang = language_of(query.from_user)
    by_stock = callback_data.sort == "stock"
    await show(
        query.message,
        *await _open_countries(shop, state, callback_data.service, callback_data.offset, lang, by_stock),
    )


@handlers.callback_query(keyboards.FavCb.filter())
async def on_favourite(
    query: CallbackQuery, callback_data: keyboards.FavCb, shop: ShopContext, user_id: int, reply: Reply
) -> None:
    """Save or forget the pair (from the confirm screen's ⭐), then show that screen again."""
    try:
        saved = await favourites.set_favourite(
            shop.core.db,
            user_id=user_id,
            service=callback_data.service,
            country=callback_data.country,
            on=callback_data.on,
            now=shop.core.clock.now(),
        )
    except InvalidInput:
        full = callback_data.on and callback_data.service in SERVICE_CODES
        reply.say(
            texts.favourites_full(favourites.MAX_FAVOURITES) if full else texts.STALE_BUTTON, alert=True
        )
        return
    reply.say(texts.favourite_toast(saved))
    if not callback_data.redraw:  # pressed on an order screen: the toast says it, the order stays
        return
    # Updates arrive without the pressed message's keyboard (bot.session strips it), so the
    # confirm screen is drawn again: a fresh quote, as Back and a country tap would give.
    await show(
        query.message,
        *await confirm_screen(
            shop,
            user_id=user_id,
            telegram_id=query.from_user.id,
            service=callback_data.service,
            country=callback_data.country,
        ),
    )


# --- typed text ---------------------------------------------------------------------------


@handlers.message(StateFilter(None, Browse.countries), F.text, ~F.text.startswith("/"))
async def on_text(message: Message, shop: ShopContext, state: FSMContext, user_id: int) -> None:
    """Plain text searches the list the buyer is on: countries there, services elsewhere."""
    term = (message.text or "").strip()[:MAX_SEARCH]
    lang = language_of(message.from_user)
    if await state.get_state() == Browse.countries.state:
        service = (await state.get_data()).get("service")
        if isinstance(service, str) and await _country_search(
            message, shop, state, user_id, service, term, lang
        ):
            return
    await _service_search(message, shop, state, term, lang)


async def _country_search(
    message: Message, shop: ShopContext, state: FSMContext, user_id: int, service: str, term: str, lang: str
) -> bool:
    """Answers a country search; False when the text is better read as a service."""
    offers = await offers_of(shop, service)
    by_code = {o.country: o for o in offers}
    result = search_countries(term, lang, among=by_code)
    if result.opens:
        await send_screen(
            message,
            *await confirm_screen(
                shop, user_id=user_id, telegram_id=message.chat.id, service=service, country=result.opens
            ),
        )
        return True
    name = service_name(service, texts.service_name(service), lang)
    if result.hits:
        found = [by_code[k] for k in result.keys[:SHOWN]]
        markup = keyboards.countries(
            service, found, offset=0, currency=shop.currency, lang=lang, paged=False, sortable=False
        )
        await message.answer(texts.country_results(name, term), reply_markup=markup)
        return True
    if search_services(term, lang).opens:  # "telegram" typed on WhatsApp's country list
        return False
    suggested = [by_code[k] for k in result.suggestions]
    rows = [
        (
            keyboards.country_label(o, lang, shop.currency, popular=False),
            keyboards.CountryCb(service=service, country=o.country),
        )
        for o in suggested
    ]
    await message.answer(
        texts.country_no_match(name, term, bool(rows)),
        reply_markup=keyboards.no_match(rows, keyboards.all_countries_button(service)),
    )
    return True


async def _service_search(
    message: Message, shop: ShopContext, state: FSMContext, term: str, lang: str
) -> None:
    result = search_services(term, lang)
    if result.opens:
        await send_screen(message, *await _open_countries(shop, state, result.opens, 0, lang))
        return
    await state.set_state(None)
    views = {v.code: v for v in await all_services(shop)}
    if result.hits:
        found = [views[k] for k in result.keys if k in views]
        text = texts.service_results(term, result.total)
        if result.total > SHOWN:
            text += "\n" + texts.service_results_more(SHOWN, result.total)
        markup = keyboards.services(
            found[:SHOWN],
            offset=0,
            total=result.total,
            currency=shop.currency,
            paged=False,
            lang=lang,
            extra=[keyboards.all_services_button()],
        )
        await message.answer(text, reply_markup=markup)
        return
    rows = []
    for code in result.suggestions:
        v = views.get(code)
        if v is not None:
            label = texts.service_choice(
                service_name(code, v.name, lang), v.min_price if v.available else None, shop.currency
            )
            rows.append((label, keyboards.ServiceCb(code=code, offset=0)))
    await message.answer(
        texts.service_no_match(term, bool(rows)),
        reply_markup=keyboards.no_match(rows, keyboards.all_services_button()),
    )


# --- /buy <service> [<country>] -----------------------------------------------------------


@handlers.message(Command("buy"))
async def cmd_buy(
    message: Message, command: CommandObject, shop: ShopContext, state: FSMContext, user_id: int
) -> None:
    """Jump to the country list, or straight to confirm when both names are unambiguous."""
    words = (command.args or "").split()
    lang = language_of(message.from_user)
    if not words:
        await state.set_state(None)
        await send_screen(message, *await services_screen(shop, user_id=user_id, lang=lang))
        return
    whole = search_services(" ".join(words)[:MAX_SEARCH], lang)
    if whole.opens:
        await send_screen(message, *await _open_countries(shop, state, whole.opens, 0, lang))
        return
    for split in range(len(words) - 1, 0, -1):
        found = search_services(" ".join(words[:split])[:MAX_SEARCH], lang).opens
        if found is None:
            continue
        where = " ".join(words[split:])[:MAX_SEARCH]
        offers = await offers_of(shop, found)
        country = search_countries(where, lang, among={o.country for o in offers})
        pick = country.opens or (country.keys[0] if len(country.hits) == 1 else None)
        if pick is not None:
            await send_screen(
                message,
                *await confirm_screen(
                    shop, user_id=user_id, telegram_id=message.chat.id, service=found, country=pick
                ),
            )
            return
        screen = await _open_countries(shop, state, found, 0, lang)
        await message.answer(texts.unknown_country(found, where), reply_markup=screen[1])
        return
    await _service_search(message, shop, state, " ".join(words)[:MAX_SEARCH], lang)
