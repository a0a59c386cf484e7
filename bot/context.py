"""What handlers share: core, settings-derived values, and small screen helpers.

Handlers receive ``shop: ShopContext`` (from the dispatcher's workflow data), so they stay
thin: read the callback, call one core service, render one screen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InaccessibleMessage, InlineKeyboardMarkup, MaybeInaccessibleMessage, Message

from bot import errors, keyboards, texts
from bot.invoices import InvoiceSigner, credit_for_stars, PACKAGES
from bot.middlewares import UserDirectory
from core.app import Core
from core.orders import OrderView

log = logging.getLogger(__name__)


@dataclass
class ShopContext:
    core: Core
    signer: InvoiceSigner
    users: UserDirectory
    wake_sender: Callable[[], None] = field(default=lambda: None)

    @property
    def currency(self) -> str:
        return self.core.settings.SHOP_CURRENCY

    @property
    def markup_percent(self) -> float:
        return self.core.settings.MARKUP_PERCENT

    @property
    def stars_per_unit(self) -> float:
        return self.core.settings.STARS_PER_CURRENCY_UNIT

    def packages(self) -> list[tuple[int, int]]:
        return [(s, credit_for_stars(s, self.stars_per_unit, self.currency)) for s in PACKAGES]

    def order_screen(self, order: OrderView, *, from_list: bool = False) -> tuple[str, InlineKeyboardMarkup]:
        text = texts.order(
            status=order.status, service=order.service, country=order.country,
            price=order.price, currency=self.currency, phone=order.phone, code=order.code,
            expires_at=order.expires_at, now=self.core.clock.now(), order_id=order.id,
            failure_reason=order.failure_reason)
        return text, keyboards.order(order, from_list=from_list)


async def show(
    message: MaybeInaccessibleMessage | None, text: str,
    markup: InlineKeyboardMarkup | None = None,
) -> None:
    """Replace a screen in place; send a fresh message when the old one can't be edited."""
    if message is None:
        return
    if isinstance(message, Message) and message.text is not None:
        try:
            await message.edit_text(text, reply_markup=markup)
            return
        except TelegramBadRequest as exc:
            if errors.is_not_modified(exc):
                return
            log.info("could not edit message %s: %s; sending a new one", message.message_id, exc)
    if isinstance(message, (Message, InaccessibleMessage)) and message.bot is not None:
        await message.bot.send_message(message.chat.id, text, reply_markup=markup)


async def send_screen(message: Message, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """Answer a user's message with a new screen."""
    await message.answer(text, reply_markup=markup)


def accessible(message: MaybeInaccessibleMessage | None) -> Message | None:
    return message if isinstance(message, Message) else None
