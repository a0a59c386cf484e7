"""Top-ups with crypto through Crypto Pay (@CryptoBot).

The buyer picks one of the top-up packages (the same amounts the Stars packages add) or
types an amount within the same bounds; core creates the invoice (``core.cryptopay``) and
the bot shows its pay link. Nothing is credited here: the payment comes back through the
dashboard's webhook or the scheduler's poll, which credit once and queue the message.
"""

from __future__ import annotations

from aiogram import F
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot import keyboards, texts
from bot.context import ShopContext, show
from bot.handlers import HandlerSet
from bot.invoices import amount_bounds
from bot.middlewares import Reply
from core.cryptopay import EXPIRES_IN_S, CryptoPayUnavailable
from core.money import MoneyError, parse_positive_amount

handlers = HandlerSet("crypto")


class CryptoTopUp(StatesGroup):
    amount = State()


def _choice(shop: ShopContext) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(
            text=texts.btn_crypto_amount(amount, shop.currency),
            callback_data=keyboards.CryptoCb(package=stars).pack(),
        )
        for stars, amount in shop.packages()
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append(
        [
            InlineKeyboardButton(
                text=texts.btn_crypto_other(), callback_data=keyboards.CryptoCb(package=0).pack()
            )
        ]
    )
    rows.append(
        [
            InlineKeyboardButton(text=texts.BTN_BACK, callback_data=keyboards.MenuCb(to="balance").pack()),
            *keyboards.menu_row(),
        ]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def _send_invoice(
    message: Message, shop: ShopContext, telegram_id: int, amount: int, username: str | None
) -> None:
    service = shop.core.cryptopay
    if service is None:
        await message.answer(texts.crypto_off())
        return
    try:
        created = await service.create_invoice(
            telegram_id,
            amount,
            description=texts.invoice_title(amount, shop.currency),
            username=username,
        )
    except CryptoPayUnavailable:
        await message.answer(texts.crypto_unavailable())
        return
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=texts.btn_crypto_pay(amount, shop.currency), url=created.pay_url)],
            keyboards.menu_row(),
        ]
    )
    await message.answer(texts.crypto_invoice(amount, shop.currency, EXPIRES_IN_S // 60), reply_markup=markup)


@handlers.callback_query(keyboards.CryptoCb.filter(F.package == -1))
async def on_crypto(query: CallbackQuery, shop: ShopContext, reply: Reply) -> None:
    if shop.core.cryptopay is None:
        reply.say(texts.crypto_off(), alert=True)
        return
    await show(
        query.message, texts.crypto_choose(shop.currency, shop.core.settings.CRYPTOPAY_ASSETS), _choice(shop)
    )


@handlers.callback_query(keyboards.CryptoCb.filter(F.package == 0))
async def on_other_amount(query: CallbackQuery, shop: ShopContext, state: FSMContext) -> None:
    await state.set_state(CryptoTopUp.amount)
    low, high = amount_bounds(shop.stars_per_unit, shop.currency)
    if query.message is not None and query.message.bot is not None:
        await query.message.bot.send_message(
            query.from_user.id, texts.crypto_ask_amount(shop.currency, low, high)
        )


@handlers.callback_query(keyboards.CryptoCb.filter())
async def on_package(
    query: CallbackQuery, callback_data: keyboards.CryptoCb, shop: ShopContext, reply: Reply
) -> None:
    packages = dict(shop.packages())
    message = query.message
    if callback_data.package not in packages or not isinstance(message, Message):
        reply.say(texts.STALE_BUTTON, alert=True)
        return
    await _send_invoice(
        message, shop, query.from_user.id, packages[callback_data.package], query.from_user.username
    )


@handlers.message(StateFilter(CryptoTopUp.amount), F.text, ~F.text.startswith("/"))
async def on_amount_typed(message: Message, shop: ShopContext, state: FSMContext) -> None:
    low, high = amount_bounds(shop.stars_per_unit, shop.currency)
    try:
        wanted = parse_positive_amount(message.text or "", shop.currency)
    except MoneyError:
        wanted = -1
    if not low <= wanted <= high:
        await message.answer(texts.bad_amount(shop.currency, low, high))
        return
    await state.clear()
    username = message.from_user.username if message.from_user else None
    await _send_invoice(message, shop, message.chat.id, wanted, username)
