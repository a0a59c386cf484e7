"""What runs around every handler: delivery dedupe, callback answers, errors, limits, users.

Order (outermost first), set up in ``bot.app.build_dispatcher``:

* ``UpdateDedupe`` (every update): records ``update_id`` in ``processed_updates`` before the
  update is handled and drops one that was recorded already, so a redelivered update (a
  webhook retry, a crash before the polling offset moved on) has its effect once. A
  ``successful_payment`` is the exception: it is always handled, because crediting is
  idempotent on the payment's charge id and a payment must never be lost to a crash between
  recording and crediting.
* ``CallbackAnswerer`` (callback queries): every query is answered exactly once — with what
  the handler put in ``reply``, with the sentence for the error it raised, or with "working
  on it" when the handler is still busy after ``deadline`` seconds (Telegram shows a spinner
  until a query is answered).
* ``MessageErrors`` (messages): an exception becomes a sentence in the chat, never silence
  or a traceback.
* ``RateLimit`` (messages and callback queries, never payments): a simple per-user token
  bucket; over the limit the update is refused with a sentence and changes nothing.
* ``UserResolver`` (messages, callback queries, pre-checkout queries): the shop user for the
  Telegram user, created on first sight; handlers receive ``user_id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, Message, TelegramObject, Update, User

from bot import errors, texts
from core.clock import Clock
from core.db.engine import Database
from core.update_log import record_updates
from core.users import resolve_user

log = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


# --- delivery dedupe --------------------------------------------------------------------


class UpdateLog:
    """Records update ids; concurrent records share one transaction (group commit).

    Under load many updates arrive together; one write transaction for all of them keeps the
    cost of deduplication flat instead of one ``BEGIN IMMEDIATE`` per update on SQLite.
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._pending: list[tuple[int, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, update_id: int) -> bool:
        """True the first time ``update_id`` is seen, False for a redelivery."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((update_id, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            ids = list(dict.fromkeys(update_id for update_id, _ in batch))
            try:
                inserted = await record_updates(self.db, ids, self.clock.now())
            except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for update_id, future in batch:
                # Fresh for the first waiter of a newly inserted id; a duplicate in the
                # same batch is a redelivery like any other.
                fresh = update_id in inserted
                inserted.discard(update_id)
                if not future.done():
                    future.set_result(fresh)


def _is_payment(update: Update) -> bool:
    return update.message is not None and update.message.successful_payment is not None


class UpdateDedupe(BaseMiddleware):
    def __init__(self, log_: UpdateLog) -> None:
        self.log = log_

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        try:
            fresh = await self.log.record(event.update_id)
        except Exception:  # noqa: BLE001 - handle anyway; core's own keys still dedupe effects
            log.exception("could not record update %s; handling it anyway", event.update_id)
            fresh = True
        if not fresh and not _is_payment(event):
            log.info("update %s was delivered again; dropped", event.update_id)
            return None
        data["redelivered"] = not fresh
        return await handler(event, data)


# --- callback answers and errors --------------------------------------------------------


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
            self.deadline, lambda: early.append(asyncio.ensure_future(
                self._answer(event, Reply(texts.WORKING)))))
        try:
            result = await self._run(handler, event, data, reply)
        finally:
            timer.cancel()
        if early:
            await early[0]  # answered "working on it" already; the screen says the rest
        else:
            await self._answer(event, reply)
        return result

    async def _run(self, handler: Handler, event: CallbackQuery, data: dict[str, Any], reply: Reply) -> Any:
        try:
            result = await handler(event, data)
        except Exception as exc:  # noqa: BLE001 - the user gets a sentence, the log the rest
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
        except Exception as exc:  # noqa: BLE001
            if errors.is_not_modified(exc):
                return None
            _log_error(exc, f"message from {event.chat.id}")
            try:
                await event.answer(errors.sentence(exc, self.currency))
            except TelegramAPIError as send_exc:
                log.info("could not tell chat %s about an error: %s", event.chat.id, send_exc)
            return None


# --- per-user rate limit ----------------------------------------------------------------


class TokenBucket:
    """``burst`` actions at once, then ``rate`` per second, per key."""

    def __init__(self, rate: float, burst: int, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.monotonic = monotonic
        self._buckets: dict[int, tuple[float, float]] = {}

    def allow(self, key: int) -> bool:
        now = self.monotonic()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if len(self._buckets) > 100_000:
            self._buckets.clear()  # bounded memory; forgetting only makes limits laxer
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True


class RateLimit(BaseMiddleware):
    WARN_EVERY_S = 5.0

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self._warned: dict[int, float] = {}

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or (isinstance(event, Message) and event.successful_payment is not None):
            return await handler(event, data)
        if self.bucket.allow(user.id):
            return await handler(event, data)
        log.info("user %s is rate limited", user.id)
        if isinstance(event, CallbackQuery):
            data["reply"].say(texts.RATE_LIMITED)
        elif isinstance(event, Message):
            now = self.bucket.monotonic()
            if now - self._warned.get(user.id, -1e9) >= self.WARN_EVERY_S:
                self._warned[user.id] = now
                await event.answer(texts.RATE_LIMITED)
        return None


# --- users ------------------------------------------------------------------------------


class UserDirectory:
    """Telegram id → (shop user id, wallet account id), created on first sight and
    remembered in the process.

    The mapping never changes once made, so caching it is safe; ``forget`` makes the next
    update from that user go to the database again (the sender calls it after a 403 so a
    user who unblocks the bot is marked reachable again on their next message).
    """

    MAX = 200_000

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._ids: dict[int, tuple[int, int]] = {}

    def wallet_account(self, telegram_id: int) -> int | None:
        known = self._ids.get(telegram_id)
        return known[1] if known else None

    async def resolve(self, user: User) -> int:
        cached = self._ids.get(user.id)
        if cached is not None:
            return cached[0]
        row = await resolve_user(self.db, telegram_id=user.id, username=user.username,
                                 first_name=user.first_name, now=self.clock.now())
        if len(self._ids) >= self.MAX:
            self._ids.clear()
        self._ids[user.id] = (row.id, row.wallet_account_id)
        return row.id

    def forget(self, telegram_id: int) -> None:
        self._ids.pop(telegram_id, None)


class UserResolver(BaseMiddleware):
    def __init__(self, users: UserDirectory) -> None:
        self.users = users

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        chat = data.get("event_chat")
        if user is None or user.is_bot:
            return None
        if isinstance(event, Message) and chat is not None and chat.type != "private":
            return None  # the shop lives in private chats only
        data["user_id"] = await self.users.resolve(user)
        return await handler(event, data)
