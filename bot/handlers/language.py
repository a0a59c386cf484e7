"""/language: the buyer picks the language the bot speaks; stored through core."""

from __future__ import annotations

from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from bot import keyboards, texts
from bot.context import ShopContext, show
from bot.handlers import HandlerSet
from bot.i18n import I18N, current_locale

handlers = HandlerSet("language")


@handlers.message(Command("language"))
async def cmd_language(message: Message) -> None:
    await message.answer(texts.language_prompt(), reply_markup=keyboards.languages(current_locale()))


@handlers.callback_query(keyboards.LangCb.filter())
async def on_language(query: CallbackQuery, callback_data: keyboards.LangCb, shop: ShopContext) -> None:
    await shop.users.choose_language(query.from_user.id, callback_data.lang)
    wallet = await shop.balance(query.from_user.id)
    with I18N.use_locale(callback_data.lang):  # this answer is already in the new language
        await show(
            query.message,
            texts.language_set() + "\n\n" + texts.menu(wallet.available, shop.currency),
            keyboards.main_menu(),
        )
