"""Where aiogram keeps conversation state (a custom top-up amount being typed, …).

In memory for one process; in Redis when ``REDIS_URL`` is set, so that with several workers
(webhook mode behind a load balancer) the worker taking a user's next message knows what the
previous one asked them.
"""

from __future__ import annotations

from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import RedisStorage

#: Conversation state older than this is forgotten (a user who walked away mid-question).
STATE_TTL_S = 24 * 3600


def make_storage(redis_url: str | None) -> BaseStorage:
    if not redis_url:
        return MemoryStorage()
    return RedisStorage.from_url(redis_url, state_ttl=STATE_TTL_S, data_ttl=STATE_TTL_S)
