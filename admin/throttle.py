"""Login throttling: an attempt is reserved before its password is checked.

Two counters per attempt: (username, client IP) trips after a few attempts, so one person
guessing one account is slowed without locking the real owner out from elsewhere; the IP alone
trips after more, so one address spraying many usernames is slowed too.

Why reserve first: checking the counters, running the slow argon2 hash and only then recording
the failure lets many requests sent at once all pass the check before any failure is recorded
(30 at once got 30 password checks). :meth:`LoginThrottle.reserve` checks and counts in one
atomic step — a Lua script in Redis when ``REDIS_URL`` is set, so every replica shares the
counters; a plain dict updated without an ``await`` in between otherwise — and only a reserved
attempt reaches the hash. A successful login gives its reservation back.

Times come from the injected clock (stored as scores), so tests move time instead of sleeping;
Redis key expiry only collects garbage.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from litestar.stores.base import Store

from core.clock import Clock


@dataclass(frozen=True)
class ThrottlePolicy:
    per_account: int = 5
    per_ip: int = 20
    window_seconds: int = 15 * 60  # attempts older than this are forgotten
    lockout_seconds: int = 15 * 60  # refused for this long after the last attempt that tripped


@dataclass(frozen=True)
class Reservation:
    """An attempt that may check a password (``wait == 0``), or the seconds to wait."""

    wait: int
    member: str
    keys: tuple[str, ...]


class _Counters(Protocol):
    async def reserve(
        self, keys: list[tuple[str, int]], now: float, member: str, policy: ThrottlePolicy
    ) -> float: ...

    async def release(self, keys: tuple[str, ...], member: str) -> None: ...

    async def clear(self, key: str) -> None: ...


def _wait(stamps: list[float], limit: int, now: float, policy: ThrottlePolicy) -> float:
    recent = [s for s in stamps if s > now - policy.window_seconds]
    if len(recent) < limit:
        return 0.0
    return max(stamps) + policy.lockout_seconds - now


class MemoryCounters:
    """One process: a dict changed only between awaits, so each reserve is atomic."""

    MAX_KEYS = 100_000

    def __init__(self) -> None:
        self._stamps: dict[str, dict[str, float]] = {}

    async def reserve(
        self, keys: list[tuple[str, int]], now: float, member: str, policy: ThrottlePolicy
    ) -> float:
        horizon = now - max(policy.window_seconds, policy.lockout_seconds)
        if len(self._stamps) > self.MAX_KEYS:
            # A password spray must not grow the dict without bound.
            self._stamps = {k: v for k, v in self._stamps.items() if any(s > horizon for s in v.values())}
        wait = 0.0
        for key, limit in keys:
            entries = self._stamps.setdefault(key, {})
            for old in [m for m, s in entries.items() if s <= horizon]:
                del entries[old]
            wait = max(wait, _wait(list(entries.values()), limit, now, policy))
        if wait > 0:
            return wait
        for key, _ in keys:
            self._stamps[key][member] = now
        return 0.0

    async def release(self, keys: tuple[str, ...], member: str) -> None:
        for key in keys:
            self._stamps.get(key, {}).pop(member, None)

    async def clear(self, key: str) -> None:
        self._stamps.pop(key, None)


# KEYS: the counters; ARGV: now, horizon, window, lockout, member, ttl, then one limit per key.
# Returns the wait in milliseconds (0: reserved in every counter).
_RESERVE_LUA = """
local now = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local lockout = tonumber(ARGV[4])
local wait = 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', horizon)
  local limit = tonumber(ARGV[6 + i])
  if redis.call('ZCOUNT', key, '(' .. (now - window), '+inf') >= limit then
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    local w = tonumber(last[2]) + lockout - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return math.ceil(wait * 1000) end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[5])
  redis.call('EXPIRE', key, tonumber(ARGV[6]))
end
return 0
"""


class RedisCounters:
    """Shared by every replica: one Lua script checks and counts atomically."""

    def __init__(self, redis: Any, namespace: str) -> None:
        self._redis = redis
        self._prefix = f"{namespace}:" if namespace else ""
        self._script = redis.register_script(_RESERVE_LUA)

    async def reserve(
        self, keys: list[tuple[str, int]], now: float, member: str, policy: ThrottlePolicy
    ) -> float:
        horizon = now - max(policy.window_seconds, policy.lockout_seconds)
        ttl = max(policy.window_seconds, policy.lockout_seconds) + 60
        millis = await self._script(
            keys=[self._prefix + k for k, _ in keys],
            args=[
                repr(now),
                repr(horizon),
                policy.window_seconds,
                policy.lockout_seconds,
                member,
                ttl,
                *[limit for _, limit in keys],
            ],
        )
        return int(millis) / 1000

    async def release(self, keys: tuple[str, ...], member: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.zrem(self._prefix + key, member)
            await pipe.execute()

    async def clear(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)


def counters_for(store: Store) -> _Counters:
    """Redis counters when the session store is Redis (replicas share them), else memory."""
    try:
        from litestar.stores.redis import RedisStore
    except ImportError:  # redis is an optional dependency of litestar
        return MemoryCounters()
    if isinstance(store, RedisStore):
        return RedisCounters(store._redis, f"{store.namespace}:throttle" if store.namespace else "throttle")
    return MemoryCounters()


class LoginThrottle:
    def __init__(self, store: Store, clock: Clock, policy: ThrottlePolicy | None = None) -> None:
        self.clock = clock
        self.policy = policy or ThrottlePolicy()
        self.counters = counters_for(store)

    def _keys(self, username: str, ip: str) -> list[tuple[str, int]]:
        user = (username or "").strip().lower()[:64]
        return [(f"login:acct:{user}:{ip}", self.policy.per_account), (f"login:ip:{ip}", self.policy.per_ip)]

    async def reserve(self, username: str, ip: str) -> Reservation:
        """Count this attempt now, before its password is checked; refused attempts are not
        counted (they cost nothing and must not extend the lock forever)."""
        keys = self._keys(username, ip)
        member = secrets.token_hex(8)
        wait = await self.counters.reserve(keys, self.clock.now().timestamp(), member, self.policy)
        return Reservation(max(0, math.ceil(wait)), member, tuple(k for k, _ in keys))

    async def success(self, reservation: Reservation) -> None:
        """The password was right: give the reservation back and forget the account's failures."""
        await self.counters.release(reservation.keys, reservation.member)
        await self.counters.clear(reservation.keys[0])
