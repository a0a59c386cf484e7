"""What handlers share: core, settings-derived values, and small screen helpers.

Handlers receive ``shop: ShopContext`` (from the dispatcher's workflow data), so they stay
thin: read the callback, call one core service, render one screen.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InaccessibleMessage, InlineKeyboardMarkup, MaybeInaccessibleMessage, Message

from bot import errors, keyboards, texts
from bot.invoices import PACKAGES, InvoiceSigner, credit_for_stars
from bot.middlewares import UserDirectory
from core.app import Core
from core.orders import OrderView
from core.orders.view import number_open
from core.users import wallet_balance

log = logging.getLogger(__name__)
T = TypeVar("T")


class TtlCache:
    """A small read-through cache with expiry; concurrent misses share one load.

    For the catalogue screens: every user browsing WhatsApp sees the same country list, the
    offers behind it change only when the scheduler syncs a provider, and the confirm screen
    re-prices from the database (a fresh quote), so a few seconds of staleness on a list
    costs nothing while sparing the database the same queries for every tap.
    """

    def __init__(
        self, ttl: float, max_entries: int = 1024, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.monotonic = monotonic
        self._entries: dict[Hashable, tuple[float, asyncio.Future[Any]]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        now = self.monotonic()
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            if len(self._entries) >= self.max_entries:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            entry = (now + self.ttl, future)
            self._entries[key] = entry
            try:
                future.set_result(await load())
            except asyncio.CancelledError:
                self._entries.pop(key, None)
                future.cancel()
                raise
            except Exception as exc:
                self._entries.pop(key, None)
                future.set_exception(exc)
                future.exception()  # marked retrieved; every awaiter re-raises it below
        return await asyncio.shield(entry[1])


@dataclass
class ShopContext:
    core: Core
    signer: InvoiceSigner
    users: UserDirectory
    wake_sender: Callable[[], None] = field(default=lambda: None)
    catalogue_cache: TtlCache = field(default_factory=lambda: TtlCache(ttl=5.0))

    async def balance(self, telegram_id: int) -> Any:
        """Balance, held and available for a user (one query when the wallet is known)."""
        account = self.users.wallet_account(telegram_id)
        if account is None:
            return await self.core.wallets.show(telegram_id)
        return await wallet_balance(self.core.db, account)

    @property
    def currency(self) -> str:
        return self.core.settings.SHOP_CURRENCY

    @property
    def markup_percent(self) -> float:
        return self.core.settings.MARKUP_PERCENT

    @property
    def stars_per_unit(self) -> float:
        return self.core.settings.STARS_PER_CURRENCY_UNIT

    def packages(self) -> tuple[tuple[int, int], ...]:
        return tuple((s, credit_for_stars(s, self.stars_per_unit, self.currency)) for s in PACKAGES)

    def order_screen(self, order: OrderView, *, from_list: bool = False) -> tuple[str, InlineKeyboardMarkup]:
        return order_screen(order, now=self.core.clock.now(), currency=self.currency, from_list=from_list)


def order_screen(
    order: OrderView, *, now: datetime, currency: str, from_list: bool = False
) -> tuple[str, InlineKeyboardMarkup]:
    """The order message as it should look now (handlers and the sender share it)."""
    text = texts.order(
        status=order.status,
        service=order.service,
        country=order.country,
        price=order.price,
        currency=currency,
        phone=order.phone,
        code=order.code,
        expires_at=order.expires_at,
        now=now,
        order_id=order.id,
        open_number=number_open(order, now),
    )
    return text, keyboards.order(order, from_list=from_list, now=now)


async def show(
    message: MaybeInaccessibleMessage | None,
    text: str,
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
