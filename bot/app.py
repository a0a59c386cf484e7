"""Build the bot from a ``Core``: the aiogram client, the dispatcher, the outbox sender.

``build_bot`` points aiogram at ``TELEGRAM_API_URL`` (Telegram, or the emulator in tests and
the sandbox). ``build_app`` wires middlewares and routers around one core; ``BotApp.run``
long-polls and drains the outbox until told to stop. The sandbox (``numbershop run`` without
a token) builds the same ``BotApp`` pointed at the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import BotCommand

from bot.context import ShopContext
from bot.handlers import routers
from bot.invoices import InvoiceSigner
from bot.middlewares.dedupe import UpdateDedupe, UpdateLog
from bot.middlewares.rate_limit import RateLimit, TokenBucket
from bot.middlewares.replies import CallbackAnswerer, MessageErrors
from bot.middlewares.users import UserResolver
from bot.sender import OutboxSender
from bot.session import JsonSession
from bot.users import UserDirectory
from core.app import Core
from core.config import Settings

log = logging.getLogger(__name__)

COMMANDS = [
    BotCommand(command="start", description="Menu and balance"),
    BotCommand(command="buy", description="Buy a number: /buy whatsapp GB"),
    BotCommand(command="balance", description="Balance and top up with Stars"),
    BotCommand(command="orders", description="My recent orders"),
    BotCommand(command="help", description="How it works and refunds"),
]


def build_bot(settings: Settings, *, token: str | None = None) -> Bot:
    token = token or settings.BOT_TOKEN
    if not token:
        raise ValueError("BOT_TOKEN is not set")
    session = JsonSession(api=TelegramAPIServer.from_base(settings.TELEGRAM_API_URL))
    return Bot(token, session=session,
               default=DefaultBotProperties(parse_mode=ParseMode.HTML,
                                            link_preview_is_disabled=True))


@dataclass
class BotApp:
    bot: Bot
    dp: Dispatcher
    sender: OutboxSender
    shop: ShopContext

    async def run(self, stop: asyncio.Event, *, polling_timeout: int = 10,
                  run_sender: bool = True, set_commands: bool = True) -> None:
        """Long-poll and drain the outbox until ``stop`` is set (or polling ends)."""
        if set_commands:
            try:
                await self.bot.set_my_commands(COMMANDS)
            except Exception as exc:  # noqa: BLE001 - cosmetic; never block start-up on it
                log.warning("could not set the command list: %s", exc)
        sender_stop = asyncio.Event()
        tasks: list[asyncio.Task[Any]] = []
        if run_sender:
            tasks.append(asyncio.create_task(self.sender.run(sender_stop), name="outbox-sender"))
        polling = asyncio.create_task(self.dp.start_polling(
            self.bot, polling_timeout=polling_timeout, handle_signals=False,
            close_bot_session=False, allowed_updates=self.dp.resolve_used_update_types()),
            name="polling")
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({polling, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not polling.done():
                with contextlib.suppress(RuntimeError):  # polling had not started yet
                    await self.dp.stop_polling()
                try:
                    await asyncio.wait_for(polling, timeout=polling_timeout + 5)
                except TimeoutError:
                    polling.cancel()
            stopper.cancel()
            sender_stop.set()
            for task in tasks:
                try:
                    await asyncio.wait_for(task, timeout=10)
                except TimeoutError:
                    task.cancel()
        if polling.done() and not polling.cancelled() and polling.exception() is not None:
            raise polling.exception()  # type: ignore[misc]

    async def aclose(self) -> None:
        await self.bot.session.close()


def build_app(
    core: Core, bot: Bot, *, storage: BaseStorage | None = None,
    rate_per_second: float = 4.0, rate_burst: int = 12, answer_deadline: float = 2.0,
    sender_sleep: Callable[[float], Awaitable[None]] | None = None,
    sender_options: dict[str, Any] | None = None,
) -> BotApp:
    """The dispatcher with its middlewares (outermost first) and the feature routers."""
    currency = core.settings.SHOP_CURRENCY
    users = UserDirectory(core.db, core.clock)
    options = dict(sender_options or {})
    if sender_sleep is not None:
        options["sleep"] = sender_sleep
    sender = OutboxSender(bot, core, on_unreachable=users.forget, **options)
    shop = ShopContext(core=core, signer=InvoiceSigner(bot.token), users=users,
                       wake_sender=sender.wake)
    dp = Dispatcher(storage=storage or MemoryStorage(), shop=shop)
    dp.update.outer_middleware(UpdateDedupe(UpdateLog(core.db, core.clock)))
    dp.callback_query.outer_middleware(CallbackAnswerer(currency, answer_deadline))
    dp.message.outer_middleware(MessageErrors(currency))
    limit = RateLimit(TokenBucket(rate_per_second, rate_burst))
    dp.message.outer_middleware(limit)
    dp.callback_query.outer_middleware(limit)
    resolver = UserResolver(users)
    for observer in (dp.message, dp.callback_query, dp.pre_checkout_query):
        observer.outer_middleware(resolver)
    dp.include_routers(*routers())
    return BotApp(bot=bot, dp=dp, sender=sender, shop=shop)
