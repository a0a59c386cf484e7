"""Buying: service → country → confirm (a server-side quote) → Buy → the order message.

The confirm screen stores a quote and its Buy button carries only the quote id; the price
charged is the stored one (core checks owner and expiry). The purchase's idempotency key is
``tg:{chat_id}:{message_id}:buy:{quote_id}``: every tap on one message's Buy button — a
double tap, a second device, a retried callback — maps to one key and so buys once, and a
tap while the first is still renting is told "working on it".
"""

from __future__ import annotations

from aiogram import F
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards, texts
from bot.context import ShopContext, accessible, send_screen, show
from bot.handlers import HandlerSet
from bot.i18n import current_locale
from bot.invoices import MAX_STARS, amount_bounds, credit_for_stars, stars_for_amount
from bot.middlewares import Reply
from core import catalogue, pending_confirm, quotes
from core.catalogue import CountryOffer, ServiceView
from core.errors import AlreadyInProgress, InsufficientFunds, NoProviderAvailable, QuoteExpired

handlers = HandlerSet("buy")

MAX_SEARCH = 32
Screen = tuple[str, InlineKeyboardMarkup]


# --- screens ----------------------------------------------------------------------------


async def _services_page(
    shop: ShopContext, offset: int, search: str | None = None
) -> tuple[list[ServiceView], int]:
    async def load() -> tuple[list[ServiceView], int]:
        return await catalogue.services_page(
            shop.core.db,
            search=search,
            offset=offset,
            limit=keyboards.SERVICES_PER_PAGE,
            markup_percent=shop.markup_percent,
        )

    return await shop.catalogue_cache.get(("services", offset, search), load)


async def services_screen(shop: ShopContext, offset: int = 0) -> Screen:
    """Everyone reading one language sees the same page, so the rendered screen is cached
    with the catalogue, per language."""
    return await shop.catalogue_cache.get(
        ("services-screen", current_locale(), offset), lambda: _render_services(shop, offset)
    )


async def _render_services(shop: ShopContext, offset: int) -> Screen:
    per = keyboards.SERVICES_PER_PAGE
    views, total = await _services_page(shop, offset)
    if not views and offset > 0:  # a page that no longer exists: show the first
        offset = 0
        views, total = await _services_page(shop, offset)
    pages = max(1, (total + per - 1) // per)
    return (
        texts.services_page(offset // per + 1, pages),
        keyboards.services(views, offset=offset, total=total, currency=shop.currency),
    )


async def search_services(shop: ShopContext, term: str) -> tuple[list[ServiceView], int]:
    return await _services_page(shop, 0, term.strip().lower())


def _exact(views: list[ServiceView], total: int, term: str) -> ServiceView | None:
    low = term.lower()
    for v in views:
        if v.code == low or v.name.lower() == low:
            return v
    return views[0] if total == 1 else None


async def _offers(shop: ShopContext, service: str) -> list[CountryOffer]:
    async def load() -> list[CountryOffer]:
        return await catalogue.countries_of(shop.core.db, service, markup_percent=shop.markup_percent)

    return await shop.catalogue_cache.get(("countries", service), load)


async def countries_screen(shop: ShopContext, service: str, offset: int = 0) -> Screen:
    """The same for everyone reading one language, so cached like the services page."""
    return await shop.catalogue_cache.get(
        ("countries-screen", current_locale(), service, offset),
        lambda: _render_countries(shop, service, offset),
    )


async def _render_countries(shop: ShopContext, service: str, offset: int) -> Screen:
    offers = await _offers(shop, service)
    if not offers:
        return texts.no_countries(service), keyboards.back_to_services()
    per = keyboards.COUNTRIES_PER_PAGE
    if offset >= len(offers):
        offset = 0
    pages = (len(offers) + per - 1) // per
    return (
        texts.countries_page(service, offset // per + 1, pages),
        keyboards.countries(service, offers, offset=offset, currency=shop.currency),
    )


async def confirm_screen(
    shop: ShopContext,
    *,
    user_id: int,
    telegram_id: int,
    service: str,
    country: str,
    old_price: int | None = None,
) -> Screen:
    """A fresh quote's confirm screen; ``old_price`` (an expired quote's) adds the line that
    says the price was renewed, so the buyer sees why the screen changed."""
    settings = shop.core.settings
    quote = await quotes.new_quote(
        shop.core.db,
        user_id=user_id,
        service=service,
        country=country,
        markup_percent=shop.markup_percent,
        now=shop.core.clock.now(),
        ttl_seconds=settings.QUOTE_TTL_SECONDS,
    )
    note = None if old_price is None else texts.price_updated(old_price, quote.price, shop.currency)
    return await quote_screen(
        shop,
        telegram_id=telegram_id,
        quote_id=quote.id,
        service=service,
        country=country,
        price=quote.price,
        note=note,
    )


async def quote_screen(
    shop: ShopContext,
    *,
    telegram_id: int,
    quote_id: str,
    service: str,
    country: str,
    price: int,
    note: str | None = None,
) -> Screen:
    """The confirm screen of a stored quote; short of money, it offers a top-up of exactly
    the difference (in whole Stars, at least the smallest top-up)."""
    settings = shop.core.settings
    wallet = await shop.balance(telegram_id)
    missing = price - wallet.available
    text = texts.confirm_screen(
        service,
        country,
        price,
        wallet.available,
        shop.currency,
        price_holds_min=max(1, settings.QUOTE_TTL_SECONDS // 60),
        number_waits_min=max(1, settings.ORDER_MAX_TTL_SECONDS // 60),
        note=note,
    )
    shortfall = shortfall_top_up(shop, missing) if missing > 0 else None
    markup = keyboards.confirm(
        service, quote_id, price, shop.currency, enough=missing <= 0, shortfall=shortfall
    )
    return text, markup


def shortfall_top_up(shop: ShopContext, missing: int) -> tuple[int, int] | None:
    """(amount credited, Stars) of the smallest Stars top-up covering ``missing``; None
    when it would exceed one invoice's ceiling."""
    low, _high = amount_bounds(shop.stars_per_unit, shop.currency)
    stars = max(1, stars_for_amount(max(missing, low), shop.stars_per_unit, shop.currency))
    while credit_for_stars(stars, shop.stars_per_unit, shop.currency) < missing:
        stars += 1  # the credit rounds down; never offer a top-up that leaves the buyer short
    if stars > MAX_STARS:
        return None
    return credit_for_stars(stars, shop.stars_per_unit, shop.currency), stars


# --- browsing ---------------------------------------------------------------------------


@handlers.callback_query(keyboards.MenuCb.filter(F.to == "buy"))
async def on_buy_menu(query: CallbackQuery, shop: ShopContext) -> None:
    await show(query.message, *await services_screen(shop))


@handlers.callback_query(keyboards.ServicesCb.filter())
async def on_services_page(
    query: CallbackQuery, callback_data: keyboards.ServicesCb, shop: ShopContext
) -> None:
    await show(query.message, *await services_screen(shop, callback_data.offset))


@handlers.callback_query(keyboards.ServiceCb.filter())
async def on_service(query: CallbackQuery, callback_data: keyboards.ServiceCb, shop: ShopContext) -> None:
    await show(query.message, *await countries_screen(shop, callback_data.code, callback_data.offset))


@handlers.callback_query(keyboards.CountryCb.filter())
async def on_country(
    query: CallbackQuery, callback_data: keyboards.CountryCb, shop: ShopContext, user_id: int
) -> None:
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


@handlers.message(Command("buy"))
async def cmd_buy(message: Message, command: CommandObject, shop: ShopContext, user_id: int) -> None:
    """``/buy <service> [<country>]``: jump to the country list or straight to confirm."""
    words = (command.args or "").split()
    if not words:
        await send_screen(message, *await services_screen(shop))
        return
    telegram_id = message.chat.id
    if len(words) >= 2:
        views, total = await search_services(shop, " ".join(words[:-1])[:MAX_SEARCH])
        found = _exact(views, total, " ".join(words[:-1]))
        if found is not None:
            country = _match_country(await _offers(shop, found.code), words[-1])
            if country is not None:
                await send_screen(
                    message,
                    *await confirm_screen(
                        shop, user_id=user_id, telegram_id=telegram_id, service=found.code, country=country
                    ),
                )
                return
    term = " ".join(words)[:MAX_SEARCH]
    views, total = await search_services(shop, term)
    found = _exact(views, total, term)
    if found is not None:
        await send_screen(message, *await countries_screen(shop, found.code))
    elif len(words) >= 2 and (first := _exact(*await search_services(shop, words[0]), words[0])):
        await message.answer(
            texts.unknown_country(first.code, " ".join(words[1:])),
            reply_markup=(await countries_screen(shop, first.code))[1],
        )
    else:
        await _search_results(message, shop, term, views, total)


def _match_country(offers: list[CountryOffer], text: str) -> str | None:
    low = text.strip().lower()
    for o in offers:
        if o.country.lower() == low or o.name.lower() == low:
            return o.country
    starts = [o for o in offers if o.name.lower().startswith(low)]
    return starts[0].country if len(starts) == 1 else None


@handlers.message(StateFilter(None), F.text, ~F.text.startswith("/"))
async def on_search(message: Message, shop: ShopContext) -> None:
    """Any plain text is a search for a service by name."""
    term = (message.text or "").strip()[:MAX_SEARCH]
    views, total = await search_services(shop, term)
    found = _exact(views, total, term)
    if found is not None and total == 1:
        await send_screen(message, *await countries_screen(shop, found.code))
        return
    await _search_results(message, shop, term, views, total)


async def _search_results(
    message: Message, shop: ShopContext, term: str, views: list[ServiceView], total: int
) -> None:
    if not views:
        await message.answer(texts.search_none(term), reply_markup=keyboards.back_to_menu())
        return
    text = texts.services_page(1, 1, search=term, total=total)
    if total > len(views):
        text += "\n" + texts.search_more(len(views), total)
    await message.answer(
        text,
        reply_markup=keyboards.services(views, offset=0, total=total, currency=shop.currency, paged=False),
    )


# --- the purchase -----------------------------------------------------------------------


@handlers.callback_query(keyboards.BuyCb.filter())
async def on_buy(
    query: CallbackQuery, callback_data: keyboards.BuyCb, shop: ShopContext, user_id: int, reply: Reply
) -> None:
    message = accessible(query.message)
    if message is None:
        reply.say(texts.STALE_BUTTON, alert=True)
        return
    quote_id = str(callback_data.quote)
    key = f"tg:{message.chat.id}:{message.message_id}:buy:{quote_id}"
    try:
        order = await shop.core.orders.purchase(
            user_id=user_id,
            quote_id=quote_id,
            idempotency_key=key,
            chat_id=message.chat.id,
            message_id=message.message_id,
        )
    except AlreadyInProgress:
        reply.say(texts.WORKING)
        return
    except (QuoteExpired, InsufficientFunds) as exc:
        # Not a dead end: redraw the confirm screen in place, with the fresh price or the
        # shortfall top-up. Nothing was bought and no money moved.
        await _redraw_confirm(message, shop, quote_id, user_id, expired=isinstance(exc, QuoteExpired))
        reply.say(texts.price_expired_toast() if isinstance(exc, QuoteExpired) else texts.not_enough_toast())
        return
    except NoProviderAvailable as exc:
        found = await pending_confirm.confirm_of_quote(shop.core.db, quote_id, user_id)
        await show(
            message,
            texts.not_charged(exc.reason),
            keyboards.not_charged(found.service, found.country) if found else keyboards.back_to_menu(),
        )
        reply.say(texts.not_charged(exc.reason), alert=True)
        return
    await show(message, *shop.order_screen(order))


async def _redraw_confirm(
    message: Message, shop: ShopContext, quote_id: str, user_id: int, *, expired: bool
) -> None:
    found = await pending_confirm.confirm_of_quote(shop.core.db, quote_id, user_id)
    if found is None:
        return
    telegram_id = message.chat.id
    if expired:
        screen = await confirm_screen(
            shop,
            user_id=user_id,
            telegram_id=telegram_id,
            service=found.service,
            country=found.country,
            old_price=found.price,
        )
    else:
        screen = await quote_screen(
            shop,
            telegram_id=telegram_id,
            quote_id=found.quote_id,
            service=found.service,
            country=found.country,
            price=found.price,
        )
    await show(message, *screen)
