"""Callback answers and error sentences: every query answered once, no silent failures.

``CallbackAnswerer`` answers each callback query exactly once — with what the handler put in
``reply``, with the sentence for the error it raised, or with "working on it" when the
handler is still busy after ``deadline`` seconds (Telegram shows a spinner until a query is
answered). In webhook mode an answer given in time rides on the webhook's 200 reply
(``bot.webhook_reply``) instead of costing a request; the early "working on it" is a request
either way. ``MessageErrors`` turns an exception in a message handler into a sentence in the
chat, never silence or a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot import errors, texts
from bot.middlewares.handler import Handler
from bot.webhook_reply import WebhookReply

log = logging.getLogger(__name__)


@dataclass
class Reply:
    """What a callback query is answered with; handlers set it, the answerer sends it."""

    text: str | None = None
    alert: bool = False

    def say(self, text: str, *, alert: bool = False) -> None:
        self.text, self.alert = text, alert


def _log_error(exc: BaseException, what: str) -> None:
    if errors.is_expected(exc):
        log.info("%s: %s: %s", what, type(exc).__name__, exc)
    else:
        log.error("%s failed", what, exc_info=exc)


class CallbackAnswerer(BaseMiddleware):
    def __init__(self, currency: str, deadline: float = 2.0) -> None:
        self.currency = currency
        self.deadline = deadline

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, CallbackQuery)
        reply = Reply()
        data["reply"] = reply
        early: list[asyncio.Task[None]] = []
        timer = asyncio.get_running_loop().call_later(
            self.deadline,
            lambda: early.append(asyncio.ensure_future(self._answer(event, Reply(texts.WORKING)))),
        )
        try:
            result = await self._run(handler, event, data, reply)
        finally:
            timer.cancel()
        slot = data.get("webhook_reply")
        if early:
            await early[0]  # answered "working on it" already; the screen says the rest
        elif isinstance(slot, WebhookReply):
            slot.answer(event.id, reply.text, alert=reply.alert)
        else:
            await self._answer(event, reply)
        return result

    async def _run(self, handler: Handler, event: CallbackQuery, data: dict[str, Any], reply: Reply) -> Any:
        try:
            result = await handler(event, data)
        except Exception as exc:
            if errors.is_not_modified(exc):
                return None
            _log_error(exc, f"callback {event.data!r} from {event.from_user.id}")
            text = errors.sentence(exc, self.currency)
            reply.say(text, alert=text != texts.WORKING)
            return None
        if result is UNHANDLED and reply.text is None:
            log.info("callback %r from %s matched nothing", event.data, event.from_user.id)
            reply.say(texts.STALE_BUTTON, alert=True)
        return result

    async def _answer(self, event: CallbackQuery, reply: Reply) -> None:
        try:
            await event.answer(text=reply.text, show_alert=reply.alert)
        except TelegramAPIError as exc:  # too old, or already answered: nothing to do
            log.info("could not answer callback %s: %s", event.id, exc)


class MessageErrors(BaseMiddleware):
    def __init__(self, currency: str) -> None:
        self.currency = currency

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Message)
        try:
            return await handler(event, data)
        except Exception as exc:
            if errors.is_not_modified(exc):
                return None
            _log_error(exc, f"message from {event.chat.id}")
            try:
                await event.answer(errors.sentence(exc, self.currency))
            except TelegramAPIError as send_exc:
                log.info("could not tell chat %s about an error: %s", event.chat.id, send_exc)
            return None
