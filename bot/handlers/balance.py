"""Balance and top-ups with Telegram Stars.

An invoice's payload is issued and signed by ``bot.invoices``; ``pre_checkout_query`` is
approved only when the payload verifies for this user, in XTR, for exactly the Stars we
asked. ``successful_payment`` credits the wallet through ``Wallets.top_up`` with the
payment's ``telegram_payment_charge_id`` as the reference, so the same payment reported
twice (a redelivered update, a resent message) credits once.
"""

from __future__ import annotations

import logging

from aiogram import F
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    LabeledPrice,
    MaybeInaccessibleMessage,
    Message,
    PreCheckoutQuery,
)

from bot import keyboards, texts
from bot.context import ShopContext, show
from bot.handlers import HandlerSet
from bot.invoices import MAX_STARS, amount_bounds, credit_for_stars, stars_for_amount
from bot.middlewares import Reply
from core import pending_confirm
from core.money import MoneyError, parse_positive_amount

log = logging.getLogger(__name__)
handlers = HandlerSet("balance")
SOURCE = "telegram_stars"


class TopUp(StatesGroup):
    amount = State()


async def _balance_screen(shop: ShopContext, telegram_id: int) -> tuple[str, InlineKeyboardMarkup]:
    wallet = await shop.balance(telegram_id)
    crypto = shop.core.cryptopay is not None
    return (
        texts.balance(wallet.balance, wallet.held, wallet.available, shop.currency, crypto=crypto),
        keyboards.balance(shop.packages(), shop.currency, crypto=crypto),
    )


@handlers.message(Command("balance"))
async def cmd_balance(message: Message, shop: ShopContext, state: FSMContext) -> None:
    await state.clear()
    text, markup = await _balance_screen(shop, message.chat.id)
    await message.answer(text, reply_markup=markup)


@handlers.callback_query(keyboards.MenuCb.filter(F.to == "balance"))
async def on_balance(query: CallbackQuery, shop: ShopContext) -> None:
    text, markup = await _balance_screen(shop, query.from_user.id)
    await show(query.message, text, markup)


async def _send_invoice(
    message: MaybeInaccessibleMessage | None, shop: ShopContext, telegram_id: int, stars: int, amount: int
) -> None:
    invoice = shop.signer.issue(telegram_id, stars, amount, shop.core.clock.now())
    assert message is not None and message.bot is not None
    await message.bot.send_invoice(
        chat_id=telegram_id,
        title=texts.invoice_title(amount, shop.currency),
        description=texts.invoice_description(stars, amount, shop.currency),
        payload=invoice.payload,
        currency="XTR",
        prices=[LabeledPrice(label=texts.invoice_label(amount, shop.currency), amount=stars)],
    )


@handlers.callback_query(keyboards.TopUpCb.filter(F.stars == 0))
async def on_custom_amount(query: CallbackQuery, shop: ShopContext, state: FSMContext) -> None:
    await state.set_state(TopUp.amount)
    low, high = amount_bounds(shop.stars_per_unit, shop.currency)
    if query.message is not None and query.message.bot is not None:
        await query.message.bot.send_message(query.from_user.id, texts.ask_amount(shop.currency, low, high))


@handlers.callback_query(keyboards.TopUpCb.filter())
async def on_package(
    query: CallbackQuery, callback_data: keyboards.TopUpCb, shop: ShopContext, reply: Reply
) -> None:
    packages = dict(shop.packages())
    if callback_data.stars not in packages:  # only the packages we offer, never any number
        reply.say(texts.STALE_BUTTON, alert=True)
        return
    await _send_invoice(
        query.message,
        shop,
        query.from_user.id,
        callback_data.stars,
        packages[callback_data.stars],
    )


@handlers.message(StateFilter(TopUp.amount), F.text, ~F.text.startswith("/"))
async def on_amount_typed(message: Message, shop: ShopContext, state: FSMContext) -> None:
    low, high = amount_bounds(shop.stars_per_unit, shop.currency)
    try:
        wanted = parse_positive_amount(message.text or "", shop.currency)
    except MoneyError:
        wanted = -1
    if not low <= wanted <= high:
        await message.answer(texts.bad_amount(shop.currency, low, high))
        return
    stars = min(MAX_STARS, stars_for_amount(wanted, shop.stars_per_unit, shop.currency))
    await state.clear()
    await _send_invoice(
        message, shop, message.chat.id, stars, credit_for_stars(stars, shop.stars_per_unit, shop.currency)
    )


@handlers.message(Command("topup"))
async def cmd_topup(message: Message, shop: ShopContext, state: FSMContext) -> None:
    await state.set_state(TopUp.amount)
    low, high = amount_bounds(shop.stars_per_unit, shop.currency)
    await message.answer(texts.ask_amount(shop.currency, low, high))


@handlers.pre_checkout_query()
async def on_pre_checkout(query: PreCheckoutQuery, shop: ShopContext) -> None:
    try:
        invoice = shop.signer.verify(
            query.invoice_payload,
            telegram_id=query.from_user.id,
            currency=query.currency,
            total_amount=query.total_amount,
            now=shop.core.clock.now(),
        )
    except Exception:
        log.exception("pre-checkout %s: verification failed", query.id)
        invoice = None
    if invoice is None:
        log.warning("pre-checkout %s from %s refused: payload does not match", query.id, query.from_user.id)
        await query.answer(ok=False, error_message=texts.INVOICE_INVALID)
        return
    try:
        await query.answer(ok=True)
    except TelegramBadRequest as exc:
        # A redelivery of a query another worker answered before it died (or one answered
        # too late): Telegram has its answer or has given up; either way nothing is owed.
        log.info("pre-checkout %s not answered again: %s", query.id, exc)


@handlers.message(F.successful_payment)
async def on_paid(message: Message, shop: ShopContext, redelivered: bool = False) -> None:
    paid = message.successful_payment
    assert paid is not None and message.from_user is not None
    charge_id = paid.telegram_payment_charge_id
    invoice = shop.signer.verify(
        paid.invoice_payload,
        telegram_id=message.from_user.id,
        currency=paid.currency,
        total_amount=paid.total_amount,
    )
    if invoice is None:
        # Telegram took Stars for a payload we cannot vouch for: credit nothing, keep the
        # charge id in the log and in the user's hands so staff can settle it.
        log.error(
            "payment %s from %s does not match any invoice we issued (payload %r)",
            charge_id,
            message.from_user.id,
            paid.invoice_payload,
        )
        await message.answer(texts.PAYMENT_UNMATCHED.format(charge_id=charge_id))
        return
    change = await shop.core.wallets.top_up(
        message.from_user.id,
        invoice.amount,
        source=SOURCE,
        reference=charge_id,
        username=message.from_user.username,
    )
    if change.created:
        log.info("payment %s: credited %s to %s", charge_id, invoice.amount, message.from_user.id)
        now = shop.core.clock.now()
        pending = await pending_confirm.pending_confirm(shop.core.db, change.wallet.user_id, now)
        await message.answer(
            texts.topped_up_next(
                invoice.amount, change.wallet.available, shop.currency, has_pending=pending is not None
            ),
            reply_markup=keyboards.after_top_up(
                (pending.quote_id, pending.service, pending.country, pending.price) if pending else None,
                shop.currency,
            ),
        )
    elif not redelivered:
        await message.answer(texts.TOPUP_ALREADY)
