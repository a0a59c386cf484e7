"""The order message's buttons (Cancel & refund, Check now, Another code, Done); My orders
is in ``bot.handlers.steps``.

Every action names its order by id only; core answers ``OrderNotFound`` for an id that is
unknown or belongs to someone else (existence is not disclosed), which the answerer turns
into "that button no longer works" — nothing changes.
"""

from __future__ import annotations

from aiogram import F
from aiogram.types import CallbackQuery

from bot import keyboards, texts
from bot.context import ShopContext, show
from bot.handlers import HandlerSet
from bot.middlewares import Reply
from core.errors import OrderStateConflict
from core.providers.errors import AlreadyClosed, NotSupported

handlers = HandlerSet("orders")


@handlers.callback_query(keyboards.OrderCb.filter(F.action == "view"))
async def on_view(
    query: CallbackQuery, callback_data: keyboards.OrderCb, shop: ShopContext, user_id: int
) -> None:
    order = await shop.core.orders.get_order(str(callback_data.order), user_id=user_id)
    own_message = query.message is not None and order.message_id == query.message.message_id
    await show(query.message, *shop.order_screen(order, from_list=not own_message))


@handlers.callback_query(keyboards.OrderCb.filter(F.action == "cancel"))
async def on_cancel(
    query: CallbackQuery, callback_data: keyboards.OrderCb, shop: ShopContext, user_id: int, reply: Reply
) -> None:
    result = await shop.core.orders.cancel(str(callback_data.order), user_id=user_id)
    text, markup = shop.order_screen(result.order)
    if result.completed_instead:
        shop.wake_sender()  # the code message is in the outbox
        reply.say(texts.CANCEL_COMPLETED_INSTEAD, alert=True)
    elif result.already:
        reply.say(texts.CANCEL_ALREADY)
    else:
        wallet = await shop.balance(query.from_user.id)
        text += "\n\n" + texts.cancelled(result.refunded, wallet.available, shop.currency)
        reply.say(texts.cancelled(result.refunded, wallet.available, shop.currency, html=False))
    await show(query.message, text, markup)


@handlers.callback_query(keyboards.OrderCb.filter(F.action == "check"))
async def on_check(
    query: CallbackQuery, callback_data: keyboards.OrderCb, shop: ShopContext, user_id: int, reply: Reply
) -> None:
    order = await shop.core.orders.check_now(str(callback_data.order), user_id=user_id)
    if order.code:
        shop.wake_sender()
        reply.say(texts.CHECKED_CODE)
    elif order.status == "waiting":
        reply.say(texts.CHECKED_NOTHING)
    await show(query.message, *shop.order_screen(order))


@handlers.callback_query(keyboards.OrderCb.filter(F.action == "another"))
async def on_another(
    query: CallbackQuery, callback_data: keyboards.OrderCb, shop: ShopContext, user_id: int, reply: Reply
) -> None:
    """Ask for one more code on the open number; the provider call is the point of the tap."""
    try:
        result = await shop.core.orders.request_another_code(str(callback_data.order), user_id=user_id)
    except (OrderStateConflict, AlreadyClosed, NotSupported):
        reply.say(texts.another_closed())
        order = await shop.core.orders.get_order(str(callback_data.order), user_id=user_id)
        await show(query.message, *shop.order_screen(order))
        return
    reply.say(texts.another_already() if result.already else texts.another_requested())


@handlers.callback_query(keyboards.OrderCb.filter(F.action == "done"))
async def on_done(
    query: CallbackQuery, callback_data: keyboards.OrderCb, shop: ShopContext, user_id: int, reply: Reply
) -> None:
    """Close the open number; the provider's finish runs after this answer."""
    try:
        result = await shop.core.orders.done(str(callback_data.order), user_id=user_id)
    except OrderStateConflict as exc:
        reply.say(texts.done_not_open(exc.status))
        return
    reply.say(texts.done_already() if result.already else texts.done_ok())
    await show(query.message, *shop.order_screen(result.order))
