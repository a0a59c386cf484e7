"""Buying: service → country → confirm (a server-side quote) → Buy → the order message.

The confirm screen stores a quote and its Buy button carries only the quote id; the price
charged is the stored one (core checks owner and expiry). The purchase's idempotency key is
``tg:{chat_id}:{message_id}:buy:{quote_id}``: every tap on one message's Buy button — a
double tap, a second device, a retried callback — maps to one key and so buys once, and a
tap while the first is still renting is told "working on it".
"""

from __future__ import annotations

from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards, texts
from bot.context import ShopContext, accessible, show
from bot.handlers import HandlerSet
from bot.invoices import MAX_STARS, amount_bounds, credit_for_stars, stars_for_amount
from bot.middlewares import Reply
from core import favourites, pending_confirm, quotes
from core.errors import AlreadyInProgress, InsufficientFunds, NoProviderAvailable, QuoteExpired

handlers = HandlerSet("buy")

Screen = tuple[str, InlineKeyboardMarkup]


# --- screens (the service and country lists are in bot.handlers.search) ------------------


async def confirm_screen(
    shop: ShopContext,
    *,
    user_id: int,
    telegram_id: int,
    service: str,
    country: str,
    old_price: int | None = None,
    after_order: str | None = None,
) -> Screen:
    """A fresh quote's confirm screen; ``old_price`` (an expired quote's) adds the line that
    says the price was renewed, so the buyer sees why the screen changed. ``after_order``:
    the order this one follows ("Another number"), whose provider core tries last if it
    delivered no code."""
    settings = shop.core.settings
    quote = await quotes.new_quote(
        shop.core.db,
        user_id=user_id,
        service=service,
        country=country,
        markup_percent=shop.markup_percent,
        now=shop.core.clock.now(),
        ttl_seconds=settings.QUOTE_TTL_SECONDS,
        after_order=after_order,
    )
    note = None if old_price is None else texts.price_updated(old_price, quote.price, shop.currency)
    return await quote_screen(
        shop,
        telegram_id=telegram_id,
        user_id=user_id,
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
    user_id: int | None = None,
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
    saved = user_id is not None and await favourites.is_favourite(
        shop.core.db, user_id=user_id, service=service, country=country
    )
    markup = keyboards.confirm(
        service,
        quote_id,
        price,
        shop.currency,
        enough=missing <= 0,
        shortfall=shortfall,
        country=country,
        saved=saved,
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


# --- choosing a country ---------------------------------------------------------------


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
            user_id=user_id,
            quote_id=found.quote_id,
            service=found.service,
            country=found.country,
            price=found.price,
        )
    await show(message, *screen)
