"""Build the bot from a ``Core``: the aiogram client, the dispatcher, the outbox sender.

``build_bot`` points aiogram at ``TELEGRAM_API_URL`` (Telegram, or the emulator in tests and
the sandbox). ``build_app`` wires middlewares and routers around one core; ``BotApp.run``
long-polls (``run_webhook``: serves webhook POSTs, see ``bot.webhook``) and drains the
outbox until told to stop. With ``REDIS_URL`` the conversation state and the per-user rate
limit live in Redis, so any worker can take a user's next update. The sandbox
(``numbershop run`` without a token) builds the same ``BotApp`` pointed at the emulator.
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
from aiogram.types import BotCommand

from bot import texts
from bot.context import ShopContext
from bot.fsm_storage import make_storage
from bot.handlers import routers
from bot.i18n import use_locale
from bot.invoices import InvoiceSigner
from bot.middlewares.dedupe import UpdateDedupe, UpdateLog
from bot.middlewares.locale import UserLocale
from bot.middlewares.rate_limit import (
    RATE_BURST,
    RATE_PER_SECOND,
    RateLimit,
    RedisTokenBucket,
    TokenBucket,
    make_bucket,
)
from bot.middlewares.replies import CallbackAnswerer, MessageErrors
from bot.middlewares.users import UserResolver
from bot.sender import OutboxSender
from bot.session import JsonSession
from bot.users import UserDirectory
from bot.webhook import WebhookConfig, WebhookServer
from core.app import Core
from core.config import Settings
from core.users import LANGUAGES

log = logging.getLogger(__name__)


def commands(locale: str = "en") -> list[BotCommand]:
    """The command list in ``locale`` (descriptions live in ``bot.texts``)."""
    with use_locale(locale):
        return [BotCommand(command=c, description=d) for c, d in texts.cmd_descriptions().items()]


COMMANDS = commands()


def command_languages() -> dict[str, str]:
    """Telegram's ``language_code`` for setMyCommands (two letters) → our language;
    "" is the default list, shown to every other language."""
    return {("" if lang == "en" else lang.split("_", 1)[0]): lang for lang in LANGUAGES}


def build_bot(settings: Settings, *, token: str | None = None) -> Bot:
    token = token or settings.BOT_TOKEN
    if not token:
        raise ValueError("BOT_TOKEN is not set")
    session = JsonSession(api=TelegramAPIServer.from_base(settings.TELEGRAM_API_URL))
    return Bot(
        token,
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


@dataclass
class BotApp:
    bot: Bot
    dp: Dispatcher
    sender: OutboxSender
    shop: ShopContext
    bucket: TokenBucket | RedisTokenBucket | None = None

    async def _set_commands(self) -> None:
        for code, lang in command_languages().items():
            try:
                await self.bot.set_my_commands(commands(lang), language_code=code or None)
            except Exception as exc:
                log.warning("could not set the command list (%s): %s", code or "default", exc)

    async def run(
        self,
        stop: asyncio.Event,
        *,
        polling_timeout: int = 10,
        run_sender: bool = True,
        set_commands: bool = True,
    ) -> None:
        """Long-poll and drain the outbox until ``stop`` is set (or polling ends).

        A webhook left from an earlier webhook-mode run would make every getUpdates fail
        with 409, so polling starts by deleting it (aiogram's ``start_polling`` does not);
        pending updates are kept.
        """
        if set_commands:
            await self._set_commands()
        await self.bot.delete_webhook(drop_pending_updates=False)
        sender_stop = asyncio.Event()
        tasks: list[asyncio.Task[Any]] = []
        if run_sender:
            tasks.append(asyncio.create_task(self.sender.run(sender_stop), name="outbox-sender"))
        polling = asyncio.create_task(
            self.dp.start_polling(
                self.bot,
                polling_timeout=polling_timeout,
                handle_signals=False,
                close_bot_session=False,
                allowed_updates=self.dp.resolve_used_update_types(),
            ),
            name="polling",
        )
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
            await self._stop_tasks(sender_stop, tasks)
        if polling.done() and not polling.cancelled():
            failure = polling.exception()
            if failure is not None:
                raise failure

    async def run_webhook(
        self,
        stop: asyncio.Event,
        config: WebhookConfig,
        *,
        run_sender: bool = True,
        set_commands: bool = True,
        url_for_port: Callable[[int], str] | None = None,
        listening: asyncio.Event | None = None,
    ) -> None:
        """Serve Telegram's webhook POSTs and drain the outbox until ``stop`` is set.

        Listens first, then registers the webhook (``setWebhook``), so Telegram never
        delivers to a port nobody serves. ``url_for_port`` gives the URL to register once
        the port is bound (tests bind port 0); ``listening`` is set once registered.
        """
        if set_commands:
            await self._set_commands()
        server = WebhookServer(self.bot, self.dp, config)
        sender_stop = asyncio.Event()
        tasks: list[asyncio.Task[Any]] = []
        try:
            _, port = await server.start()
            await server.register(url_for_port(port) if url_for_port else None)
            log.info("webhook registered; listening on %s:%s%s", config.host, port, config.path)
            if listening is not None:
                listening.set()
            if run_sender:
                tasks.append(asyncio.create_task(self.sender.run(sender_stop), name="outbox-sender"))
            await stop.wait()
        finally:
            await server.stop()
            await self._stop_tasks(sender_stop, tasks)

    @staticmethod
    async def _stop_tasks(sender_stop: asyncio.Event, tasks: list[asyncio.Task[Any]]) -> None:
        sender_stop.set()
        for task in tasks:
            try:
                await asyncio.wait_for(task, timeout=10)
            except TimeoutError:
                task.cancel()

    async def aclose(self) -> None:
        await self.bot.session.close()
        await self.dp.storage.close()
        if isinstance(self.bucket, RedisTokenBucket):
            await self.bucket.aclose()


def build_app(
    core: Core,
    bot: Bot,
    *,
    storage: BaseStorage | None = None,
    rate_per_second: float = RATE_PER_SECOND,
    rate_burst: int = RATE_BURST,
    answer_deadline: float = 2.0,
    sender_sleep: Callable[[float], Awaitable[None]] | None = None,
    sender_options: dict[str, Any] | None = None,
) -> BotApp:
    """The dispatcher with its middlewares (outermost first) and the feature routers."""
    currency = core.settings.SHOP_CURRENCY
    users = UserDirectory(core.db, core.clock)
    options = dict(sender_options or {})
    if sender_sleep is not None:
        options["sleep"] = sender_sleep
    options.setdefault("low_share", core.settings.OUTBOX_LOW_PRIORITY_SHARE)
    sender = OutboxSender(
        bot, core, on_unreachable=users.forget, locale_for=users.recipient_locale, **options
    )
    shop = ShopContext(core=core, signer=InvoiceSigner(bot.token), users=users, wake_sender=sender.wake)
    if storage is None:
        storage = make_storage(core.settings.REDIS_URL)
    dp = Dispatcher(storage=storage, shop=shop)
    dp.update.outer_middleware(UpdateDedupe(UpdateLog(core.db, core.clock)))
    dp.update.outer_middleware(UserLocale(users))
    dp.callback_query.outer_middleware(CallbackAnswerer(currency, answer_deadline))
    dp.message.outer_middleware(MessageErrors(currency))
    bucket = make_bucket(core.settings.REDIS_URL, rate_per_second, rate_burst)
    limit = RateLimit(bucket)
    dp.message.outer_middleware(limit)
    dp.callback_query.outer_middleware(limit)
    resolver = UserResolver(users)
    for observer in (dp.message, dp.callback_query, dp.pre_checkout_query):
        observer.outer_middleware(resolver)
    dp.include_routers(*routers())
    return BotApp(bot=bot, dp=dp, sender=sender, shop=shop, bucket=bucket)
