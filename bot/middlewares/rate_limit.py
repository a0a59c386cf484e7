"""Per-user rate limit: a token bucket per user; over the limit the update is refused with
a sentence and changes nothing. Payments are never limited."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
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
    """Refuses updates over the user's bucket; a limited message gets one sentence per
    ``WARN_EVERY_S`` (more would be spam), a limited callback query is answered with it.

    The map of recent warnings only keeps entries still inside their quiet period: an older
    one could not stop a warning anyway. Entries are added in clock order, so the expired
    ones are always at its front and pruning is cheap; ``MAX_WARNED`` caps it during a flood
    of distinct users (forgetting one only means an early second warning).
    """

    WARN_EVERY_S = 5.0
    MAX_WARNED = 10_000

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self._warned: OrderedDict[int, float] = OrderedDict()  # user id -> when warned

    def _should_warn(self, user_id: int, now: float) -> bool:
        warned = self._warned
        while warned:
            oldest = next(iter(warned))
            if now - warned[oldest] < self.WARN_EVERY_S and len(warned) < self.MAX_WARNED:
                break
            warned.popitem(last=False)
        if user_id in warned:
            return False
        warned[user_id] = now
        return True

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or (isinstance(event, Message) and event.successful_payment is not None):
            return await handler(event, data)
        if self.bucket.allow(user.id):
            return await handler(event, data)
        log.info("user %s is rate limited", user.id)
        if isinstance(event, CallbackQuery):
            data["reply"].say(texts.RATE_LIMITED)
        elif isinstance(event, Message) and self._should_warn(user.id, self.bucket.monotonic()):
            await event.answer(texts.RATE_LIMITED)
        return None
