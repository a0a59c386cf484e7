"""The next step on every screen: buy the same again, continue after a top-up, top up
exactly what is missing, My orders page by page, and "code didn't work" reports.

Every button here carries only the id of a server-side object (an order, a quote) or a
page cursor; each id is checked against the tapping user before anything happens, and a
forged or foreign one gets one sentence and changes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from uuid import UUID

from aiogram import F
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards, texts
from bot.context import ShopContext, accessible, show
from bot.handlers import HandlerSet
from bot.handlers.balance import _send_invoice
from bot.handlers.buy import confirm_screen, quote_screen, shortfall_top_up
from bot.middlewares import Reply
from core import order_history, pending_confirm, quotes, tickets
from core.errors import NotFound, OrderNotFound, QuoteExpired
from core.providers.errors import OutOfStock

log = logging.getLogger(__name__)
handlers = HandlerSet("steps")
Screen = tuple[str, InlineKeyboardMarkup]


# --- buy the same again ---------------------------------------------------------------


@handlers.callback_query(keyboards.AgainCb.filter())
async def on_again(
    query: CallbackQuery, callback_data: keyboards.AgainCb, shop: ShopContext, user_id: int, reply: Reply
) -> None:
    """A fresh confirm screen for the order's service and country, as a new message so the
    order and its code stay on screen."""
    try:
        order = await shop.core.orders.get_order(str(callback_data.order), user_id=user_id)
    except OrderNotFound:
        reply.say(texts.order_not_yours(), alert=True)
        return
    try:
        text, markup = await confirm_screen(
            shop,
            user_id=user_id,
            telegram_id=query.from_user.id,
            service=order.service,
            country=order.country,
            after_order=order.id,  # a number that never got a code: try another provider
        )
    except (OutOfStock, NotFound):
        text, markup = (
            texts.again_unavailable(order.service, order.country),
            keyboards.not_charged(order.service),
        )
    if query.message is not None and query.message.bot is not None:
        await query.message.bot.send_message(query.from_user.id, text, reply_markup=markup)


# --- after a top-up: back to the confirm screen -----------------------------------------


@handlers.callback_query(keyboards.ResumeCb.filter())
async def on_resume(
    query: CallbackQuery, callback_data: keyboards.ResumeCb, shop: ShopContext, user_id: int, reply: Reply
) -> None:
    found = await pending_confirm.confirm_of_quote(shop.core.db, str(callback_data.quote), user_id)
    if found is None:
        reply.say(texts.STALE_BUTTON, alert=True)
        return
    if found.used:
        reply.say(texts.continue_used(), alert=True)
        return
    try:
        if found.expired(shop.core.clock.now()):
            screen = await confirm_screen(
                shop,
                user_id=user_id,
                telegram_id=query.from_user.id,
                service=found.service,
                country=found.country,
                old_price=found.price,
            )
        else:
            screen = await quote_screen(
                shop,
                telegram_id=query.from_user.id,
                user_id=user_id,
                quote_id=found.quote_id,
                service=found.service,
                country=found.country,
                price=found.price,
            )
    except (OutOfStock, NotFound):
        screen = texts.again_unavailable(found.service, found.country), keyboards.not_charged(found.service)
    await show(query.message, *screen)


# --- top up exactly the shortfall -------------------------------------------------------


@handlers.callback_query(keyboards.ShortfallCb.filter())
async def on_shortfall(
    query: CallbackQuery, callback_data: keyboards.ShortfallCb, shop: ShopContext, user_id: int, reply: Reply
) -> None:
    """The amount comes from the stored quote and the wallet now, never from the button."""
    message = accessible(query.message)
    quote_id = str(callback_data.quote)
    try:
        quote = await quotes.find_quote(shop.core.db, quote_id, user_id, shop.core.clock.now())
    except QuoteExpired:
        found = await pending_confirm.confirm_of_quote(shop.core.db, quote_id, user_id)
        if found is not None and message is not None:
            await show(
                message,
                *await confirm_screen(
                    shop,
                    user_id=user_id,
                    telegram_id=query.from_user.id,
                    service=found.service,
                    country=found.country,
                    old_price=found.price,
                ),
            )
        reply.say(texts.price_expired_toast())
        return
    except NotFound:
        reply.say(texts.STALE_BUTTON, alert=True)
        return
    wallet = await shop.balance(query.from_user.id)
    top_up = shortfall_top_up(shop, quote.price - wallet.available)
    if quote.price <= wallet.available or top_up is None:
        # Money arrived meanwhile (or the gap is beyond one invoice): show the screen as it is now.
        await show(
            message,
            *await quote_screen(
                shop,
                telegram_id=query.from_user.id,
                user_id=user_id,
                quote_id=quote.id,
                service=quote.service,
                country=quote.country,
                price=quote.price,
            ),
        )
        return
    amount, stars = top_up
    await _send_invoice(query.message, shop, query.from_user.id, stars, amount)


# --- My orders ----------------------------------------------------------------------------


async def history_screen(
    shop: ShopContext,
    user_id: int,
    status_filter: keyboards.HistoryFilter = "all",
    before: tuple[datetime, str] | None = None,
) -> Screen:
    page = await order_history.order_page(
        shop.core.db,
        user_id=user_id,
        status_filter=status_filter,
        limit=keyboards.HISTORY_PER_PAGE,
        before=before,
    )
    lines = [texts.history_title(status_filter, len(page.orders), before is None)]
    for n, v in enumerate(page.orders, 1):
        lines.append(
            texts.history_line(
                n,
                status=v.status,
                service=v.service,
                country=v.country,
                price=v.price,
                currency=shop.currency,
                phone=v.phone,
                created_at=v.created_at,
            )
        )
    markup = keyboards.history(
        page.orders, status_filter=status_filter, first_page=before is None, next_cursor=page.next_cursor
    )
    return "\n\n".join(lines), markup


@handlers.message(Command("orders"))
async def cmd_orders(message: Message, shop: ShopContext, user_id: int) -> None:
    text, markup = await history_screen(shop, user_id)
    await message.answer(text, reply_markup=markup)


@handlers.callback_query(keyboards.MenuCb.filter(F.to == "orders"))
async def on_orders(query: CallbackQuery, shop: ShopContext, user_id: int) -> None:
    await show(query.message, *await history_screen(shop, user_id))


@handlers.callback_query(keyboards.HistCb.filter())
async def on_history_page(
    query: CallbackQuery, callback_data: keyboards.HistCb, shop: ShopContext, user_id: int
) -> None:
    before = None
    if callback_data.id:
        at = keyboards.EPOCH + timedelta(microseconds=callback_data.ts)
        before = (at, str(UUID(callback_data.id)))
    await show(query.message, *await history_screen(shop, user_id, callback_data.f, before))


# --- "code didn't work" -------------------------------------------------------------------


@handlers.callback_query(keyboards.OrderCb.filter(F.action == "ticket"))
async def on_ticket(
    query: CallbackQuery, callback_data: keyboards.OrderCb, shop: ShopContext, user_id: int, reply: Reply
) -> None:
    try:
        ticket = await tickets.open_ticket(
            shop.core.db,
            shop.core.clock,
            order_id=str(callback_data.order),
            user_id=user_id,
            staff_chat_id=shop.core.settings.STAFF_CHAT_ID,
        )
    except OrderNotFound:
        reply.say(texts.order_not_yours(), alert=True)
        return
    except tickets.TicketRefused as exc:
        reply.say(texts.ticket_refused(exc.why, tickets.TICKET_WINDOW // timedelta(minutes=1)), alert=True)
        return
    shop.wake_sender()  # the staff alert, when a staff chat is set
    if query.message is not None and query.message.bot is not None:
        await query.message.bot.send_message(
            query.from_user.id,
            texts.ticket_opened(ticket.id, ticket.order_id),
            reply_markup=keyboards.ticket_opened(),
        )
