"""A broadcast through the real sender and the emulator: its text arrives as Telegram HTML,
and a user who blocked the bot is marked unreachable and left out of the next broadcast."""

from __future__ import annotations

from sqlalchemy import select

from core import broadcasts
from core.db.tables import users
from tests.e2e.bot.conftest import Harness

ALICE, BOB = 7101, 7102
TEXT = "<b>New:</b> numbers for Germany &amp; Spain"


async def test_broadcast_is_sent_and_a_blocked_user_marked_unreachable(shop: Harness) -> None:
    await shop.say(ALICE, "/start")
    await shop.say(BOB, "/start")
    shop.tg.block(BOB)
    b, _ = await broadcasts.create(
        shop.core.db,
        nonce="sender-nonce-1",
        text=TEXT,
        audience="everyone",
        audience_value=None,
        actor="staff:alice",
        now=shop.clock.now(),
    )
    assert await broadcasts.enqueue_due(shop.core.db, shop.clock.now()) == 2
    assert await shop.drain() == 2
    assert shop.tg.chat(ALICE).texts()[-1] == "New: numbers for Germany & Spain"
    async with shop.core.db.read() as conn:
        progress = await broadcasts.progress(conn, await broadcasts.get(conn, b.id))
        assert await conn.scalar(select(users.c.unreachable).where(users.c.telegram_id == BOB))
    assert (progress.sent, progress.unreachable, progress.failed, progress.total) == (1, 1, 0, 2)
    # The next broadcast leaves the unreachable user out from the start.
    second, _ = await broadcasts.create(
        shop.core.db,
        nonce="sender-nonce-2",
        text="Second",
        audience="everyone",
        audience_value=None,
        actor="staff:alice",
        now=shop.clock.now(),
    )
    assert second.total == 1
