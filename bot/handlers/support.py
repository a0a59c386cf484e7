"""Support, payment support and terms: the operator's contact and terms from settings.

Telegram requires a bot that takes Stars payments to answer ``/paysupport``; ``/support`` and
``/terms`` are the same kind of screen. Each ends in a next step (buy, top up, menu).
"""

from __future__ import annotations

from aiogram.filters import Command
from aiogram.types import Message

from bot import keyboards, texts
from bot.context import ShopContext
from bot.handlers import HandlerSet

handlers = HandlerSet("support")


@handlers.message(Command("support"))
async def cmd_support(message: Message, shop: ShopContext) -> None:
    await message.answer(
        texts.support(shop.core.settings.SUPPORT_CONTACT), reply_markup=keyboards.buy_or_menu()
    )


@handlers.message(Command("paysupport"))
async def cmd_pay_support(message: Message, shop: ShopContext) -> None:
    await message.answer(
        texts.pay_support(shop.core.settings.SUPPORT_CONTACT), reply_markup=keyboards.top_up_or_menu()
    )


@handlers.message(Command("terms"))
async def cmd_terms(message: Message, shop: ShopContext) -> None:
    await message.answer(texts.terms(shop.core.settings.TERMS_TEXT), reply_markup=keyboards.buy_or_menu())
