"""Login throttling: after repeated failures, refuse further attempts for a while.

Two counters per attempt: (username, client IP) trips after a few failures, so one person
guessing one account is slowed without locking the real owner out from elsewhere; the IP alone
trips after more, so one address spraying many usernames is slowed too. Failures are kept in
the same store as sessions (Redis when scaled out), so every replica sees them; decisions use
the injected clock, so tests move time instead of sleeping.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from litestar.stores.base import Store

from core.clock import Clock


@dataclass(frozen=True)
class ThrottlePolicy:
    per_account: int = 5
    per_ip: int = 20
    window_seconds: int = 15 * 60  # failures older than this are forgotten
    lockout_seconds: int = 15 * 60  # refused for this long after the last failure that tripped


class LoginThrottle:
    def __init__(self, store: Store, clock: Clock, policy: ThrottlePolicy | None = None) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy or ThrottlePolicy()
        self._failures_seen = 0

    def _keys(self, username: str, ip: str) -> list[tuple[str, int]]:
        user = (username or "").strip().lower()[:64]
        return [(f"login:acct:{user}:{ip}", self.policy.per_account), (f"login:ip:{ip}", self.policy.per_ip)]

    async def _failures(self, key: str) -> list[float]:
        raw = await self.store.get(key)
        if not raw:
            return []
        try:
            stamps = [float(x) for x in json.loads(raw)]
        except (ValueError, TypeError):
            return []
        horizon = self.clock.now().timestamp() - max(self.policy.window_seconds, self.policy.lockout_seconds)
        return [s for s in stamps if s > horizon]

    async def retry_after(self, username: str, ip: str) -> int:
        """Seconds until another attempt is allowed; 0 when it is allowed now."""
        now = self.clock.now().timestamp()
        wait = 0.0
        for key, limit in self._keys(username, ip):
            stamps = await self._failures(key)
            recent = [s for s in stamps if s > now - self.policy.window_seconds]
            if len(recent) >= limit:
                wait = max(wait, stamps[-1] + self.policy.lockout_seconds - now)
        return max(0, math.ceil(wait))

    async def failure(self, username: str, ip: str) -> None:
        self._failures_seen += 1
        if self._failures_seen % 500 == 0 and hasattr(self.store, "delete_expired"):
            # The in-memory store only drops expired keys when asked; a password spray
            # must not grow it without bound. (Redis expires keys by itself.)
            await self.store.delete_expired()
        now = self.clock.now().timestamp()
        ttl = max(self.policy.window_seconds, self.policy.lockout_seconds) + 60
        for key, limit in self._keys(username, ip):
            stamps = (await self._failures(key))[-(limit * 2):] + [now]
            await self.store.set(key, json.dumps(stamps), expires_in=ttl)

    async def success(self, username: str, ip: str) -> None:
        await self.store.delete(self._keys(username, ip)[0][0])
