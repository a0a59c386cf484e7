"""The list a buyer is on lives in shared conversation state: a country list opened by one
worker makes "+49" a country for the next worker too (Redis), and only there.

Needs ``NUMBERSHOP_TEST_REDIS_URL`` (skipped with the reason otherwise).
"""

from __future__ import annotations

import uuid

import pytest
from aiogram.fsm.storage.memory import MemoryStorage

from core.clock import FakeClock
from core.db.engine import Database
from tests.e2e.bot.test_webhook import harness, polling, redis_url, shop_world

__all__ = ["redis_url"]  # the fixture, used by name


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "memory-control"])
async def test_a_country_list_opened_by_one_worker_is_searched_by_another(
    db: Database, clock: FakeClock, redis_url: str, shared: bool
) -> None:
    user = 8_000 + uuid.uuid4().int % 1_000_000  # fresh conversation keys in a shared Redis
    async with shop_world(db, clock) as (tg, settings, sim):
        settings = settings.model_copy(update={"REDIS_URL": redis_url})
        storage = {} if shared else {"storage": MemoryStorage()}
        one = harness(db, clock, tg, settings, sim, **storage)
        storage = {} if shared else {"storage": MemoryStorage()}
        two = harness(db, clock, tg, settings, sim, **storage)
        try:
            async with polling(one.app):
                chat = await one.say(user, "whatsapp")
                assert "WhatsApp: choose a country" in chat.last().text
            async with polling(two.app):
                chat = await two.say(user, "+49")
            if shared:
                assert "Confirm your order" in chat.last().text and "Germany" in chat.last().text
            else:  # the control: the second worker does not know the buyer is on a country list
                assert chat.last().text.startswith("No service matches “+49”")
        finally:
            await one.app.aclose()
            await two.app.aclose()
