"""Help: how buying works and the refund rules in plain words."""

from __future__ import annotations

from aiogram import F
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from bot import keyboards, texts
from bot.context import show
from bot.handlers import HandlerSet

handlers = HandlerSet("help")


@handlers.message(Command("help"))
async def cmd_help(message: Message) -> None:
    await message.answer(texts.HELP, reply_markup=keyboards.back_to_menu())


@handlers.callback_query(keyboards.MenuCb.filter(F.to == "help"))
async def on_help(query: CallbackQuery) -> None:
    await show(query.message, texts.HELP, keyboards.back_to_menu())
