"""/start and the main menu."""

from __future__ import annotations

from aiogram import F
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import keyboards, promo_texts, texts
from bot.context import ShopContext, show
from bot.handlers import HandlerSet
from bot.handlers.promo import redeem
from core import referrals

handlers = HandlerSet("start")


@handlers.message(CommandStart())
async def cmd_start(
    message: Message, shop: ShopContext, state: FSMContext, user_id: int, command: CommandObject
) -> None:
    await state.clear()
    # Start links: t.me/<bot>?start=ref_<code> (attributed on a new user's first start only)
    # and ?start=promo_<CODE> (redeemed after the greeting).
    payload = (command.args or "").strip()
    if payload.startswith("ref_"):
        joined = await referrals.attribute(shop.core.db, user_id, payload[4:], shop.core.clock.now())
        if joined == referrals.Attribution.JOINED:
            await message.answer(promo_texts.referral_joined())
    wallet = await shop.balance(message.chat.id)
    first = message.from_user.first_name if message.from_user else None
    await message.answer(
        texts.greeting(first, wallet.available, shop.currency), reply_markup=keyboards.main_menu()
    )
    if payload.startswith("promo_"):
        await redeem(message, shop, payload[6:])


@handlers.message(Command("menu"))
async def cmd_menu(message: Message, shop: ShopContext, state: FSMContext) -> None:
    await state.clear()
    wallet = await shop.balance(message.chat.id)
    await message.answer(texts.menu(wallet.available, shop.currency), reply_markup=keyboards.main_menu())


@handlers.callback_query(keyboards.MenuCb.filter(F.to == "home"))
async def on_home(query: CallbackQuery, shop: ShopContext, state: FSMContext) -> None:
    await state.clear()
    wallet = await shop.balance(query.from_user.id)
    await show(query.message, texts.menu(wallet.available, shop.currency), keyboards.main_menu())
