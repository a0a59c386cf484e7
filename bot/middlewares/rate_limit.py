"""Per-user rate limit: a token bucket per user; over the limit the update is refused with
a sentence and changes nothing. Payments are never limited.

The buckets live in this process (``TokenBucket``) or, with ``REDIS_URL``, in Redis
(``RedisTokenBucket``), where every worker draws on the same budget: otherwise N workers
behind a load balancer would each allow the full rate.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject, User
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot import texts
from bot.middlewares.handler import Handler

log = logging.getLogger(__name__)

# Each user's bucket: refilled at this many updates a second, holding at most this many.
RATE_PER_SECOND = 4.0
RATE_BURST = 12


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

    async def acquire(self, key: int) -> bool:
        return self.allow(key)


# Refill by the time elapsed (Redis's own clock, the same for every worker), then take one
# token if there is one; atomic because a script runs alone. The key expires once a full
# bucket would have refilled, so idle users cost nothing.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(v[1]) or burst
local at = tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return ok
"""


class RedisTokenBucket:
    """``TokenBucket`` with its buckets in Redis, shared by every worker using ``url``.

    Redis down means the limit is not applied (logged) rather than every user refused: the
    limit protects the shop from floods, it must not take the shop down with Redis.
    """

    def __init__(
        self,
        url: str,
        rate: float,
        burst: int,
        *,
        prefix: str = "numbershop:rl",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.prefix = prefix
        self.monotonic = monotonic
        self.redis: Redis = Redis.from_url(url)
        self._take = self.redis.register_script(_TAKE)
        refill_s = burst / rate if rate > 0 else 86_400.0
        self._ttl_ms = int(min(refill_s, 86_400.0) * 1000) + 1000

    async def acquire(self, key: int) -> bool:
        try:
            allowed = await self._take(
                keys=[f"{self.prefix}:{key}"], args=[repr(float(self.rate)), int(self.burst), self._ttl_ms]
            )
        except RedisError as exc:
            log.warning("rate limit not applied, Redis failed: %s", exc)
            return True
        return bool(allowed)

    async def aclose(self) -> None:
        await self.redis.aclose()


def make_bucket(redis_url: str | None, rate: float, burst: int) -> TokenBucket | RedisTokenBucket:
    if redis_url:
        return RedisTokenBucket(redis_url, rate, burst)
    return TokenBucket(rate, burst)


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

    def __init__(self, bucket: TokenBucket | RedisTokenBucket) -> None:
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
        if await self.bucket.acquire(user.id):
            return await handler(event, data)
        log.info("user %s is rate limited", user.id)
        if isinstance(event, CallbackQuery):
            data["reply"].say(texts.RATE_LIMITED)
        elif isinstance(event, Message) and self._should_warn(user.id, self.bucket.monotonic()):
            await event.answer(texts.RATE_LIMITED)
        return None
