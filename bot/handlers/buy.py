"""Buying: service → country → confirm (a server-side quote) → Buy → the order message.

The confirm screen stores a quote and its Buy button carries only the quote id; the price
charged is the stored one (core checks owner and expiry). The purchase's idempotency key is
``tg:{chat_id}:{message_id}:buy:{quote_id}``: every tap on one message's Buy button — a
double tap, a second device, a retried callback — maps to one key and so buys once, and a
tap while the first is still renting is told "working on it".
"""

from __future__ import annotations

from aiogram.types import CallbackQuery, InlineKeyboardMarkup

from bot import keyboards, texts
from bot.context import ShopContext, accessible, show
from bot.handlers import HandlerSet
from bot.middlewares import Reply
from core import favourites, quotes
from core.errors import AlreadyInProgress, NoProviderAvailable

handlers = HandlerSet("buy")

Screen = tuple[str, InlineKeyboardMarkup]


# --- screens (the service and country lists are in bot.handlers.search) ------------------


async def confirm_screen(
    shop: ShopContext, *, user_id: int, telegram_id: int, service: str, country: str
) -> Screen:
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
    wallet = await shop.balance(telegram_id)
    enough = wallet.available >= quote.price
    text = texts.confirm(
        service,
        country,
        quote.price,
        wallet.available,
        shop.currency,
        max(1, settings.QUOTE_TTL_SECONDS // 60),
    )
    saved = await favourites.is_favourite(shop.core.db, user_id=user_id, service=service, country=country)
    return text, keyboards.confirm(
        service, quote.id, quote.price, shop.currency, enough=enough, country=country, saved=saved
    )


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
    except NoProviderAvailable as exc:
        service = await _quote_service(shop, quote_id, user_id)
        await show(
            message,
            texts.not_charged(exc.reason),
            keyboards.not_charged(service) if service else keyboards.back_to_menu(),
        )
        reply.say(texts.not_charged(exc.reason), alert=True)
        return
    await show(message, *shop.order_screen(order))


async def _quote_service(shop: ShopContext, quote_id: str, user_id: int) -> str | None:
    try:
        quote = await quotes.find_quote(shop.core.db, quote_id, user_id, shop.core.clock.now())
    except Exception:
        return None
    return quote.service
