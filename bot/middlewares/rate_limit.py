"""Per-user rate limit: a token bucket per user; over the limit the update is refused with
a sentence and changes nothing. Payments are never limited."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject, User

from bot import texts
from bot.middlewares.handler import Handler

log = logging.getLogger(__name__)


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
