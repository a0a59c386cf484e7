"""/start and the main menu."""

from __future__ import annotations

from aiogram import F
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import keyboards, texts
from bot.context import ShopContext, show
from bot.handlers import HandlerSet

handlers = HandlerSet("start")


@handlers.message(CommandStart())
async def cmd_start(message: Message, shop: ShopContext, state: FSMContext) -> None:
    await state.clear()
    wallet = await shop.balance(message.chat.id)
    first = message.from_user.first_name if message.from_user else None
    await message.answer(
        texts.greeting(first, wallet.available, shop.currency), reply_markup=keyboards.main_menu()
    )


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
