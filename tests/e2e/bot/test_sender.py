"""The notification sender against the emulator: blocked users, 429s, two senders, limits."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from bot.sender import OutboxSender
from core import outbox
from core.db.tables import users
from tests.e2e.bot.conftest import Harness, SleepRecorder
from tests.e2e.bot.test_journeys import buy_first_whatsapp

ALICE = 7001


async def expire_all(shop: Harness) -> int:
    waiting = await shop.core.orders.list_orders(status="waiting", limit=1000)
    latest = max(o.expires_at for o in waiting if o.expires_at is not None)
    shop.clock.set(latest)
    shop.clock.advance(1)
    return await shop.core.orders.expire_due()


async def test_blocked_user_is_marked_once_and_not_retried(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await buy_first_whatsapp(shop, ALICE)
    shop.tg.block(ALICE)
    assert await expire_all(shop) == 1
    calls_before = len(shop.tg.calls_for(ALICE))
    assert await shop.drain() == 1
    (row,) = await shop.outbox_rows()
    assert row["status"] == "unreachable" and row["lease_owner"] is None
    async with shop.core.db.read() as conn:
        assert await conn.scalar(select(users.c.unreachable).where(users.c.telegram_id == ALICE))
    tried = shop.tg.calls_for(ALICE)[calls_before:]
    assert [(c.method, c.error_code) for c in tried] == [("sendMessage", 403)]
    # Time passes, the sender keeps looking: nothing is retried.
    shop.clock.advance(3600)
    assert await shop.drain() == 0
    assert len(shop.tg.calls_for(ALICE)) == calls_before + 1
    # The money came back anyway: the refund never depended on the message.
    assert (await shop.wallet(ALICE)).available == 1000
    # Unblocking and writing again makes the user reachable.
    shop.tg.unblock(ALICE)
    await shop.say(ALICE, "/start")
    async with shop.core.db.read() as conn:
        assert not await conn.scalar(select(users.c.unreachable).where(users.c.telegram_id == ALICE))


async def test_429_is_resent_after_retry_after(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await buy_first_whatsapp(shop, ALICE)
    (order,) = await shop.orders_of(ALICE)
    shop.sim.deliver_code(order.activation_id, code="777888")
    await shop.core.orders.poll_orders([order.id])
    shop.tg.fail_next("sendMessage", chat_id=ALICE, error_code=429, retry_after=7)
    calls_before = len(shop.tg.calls_for(ALICE))
    shop.sleeps.waits.clear()
    assert await shop.drain() == 1
    tried = [(c.method, c.error_code) for c in shop.tg.calls_for(ALICE)[calls_before:]]
    assert tried[:2] == [("sendMessage", 429), ("sendMessage", None)]
    assert max(shop.sleeps.waits) >= 7 - 0.5  # waited out retry_after before resending
    assert sum("777888" in t for t in shop.tg.chat(ALICE).texts()) >= 1
    code_messages = [t for t in shop.tg.chat(ALICE).texts() if t.startswith("📩")]
    assert len(code_messages) == 1
    (row,) = await shop.outbox_rows()
    assert row["status"] == "sent"
    assert shop.app.sender.stats["retry_after"] == 1


async def test_persistent_429_puts_the_row_back_for_later(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await buy_first_whatsapp(shop, ALICE)
    await expire_all(shop)
    shop.tg.fail_next("sendMessage", chat_id=ALICE, error_code=429, retry_after=30, count=3)
    assert await shop.drain() == 1
    (row,) = await shop.outbox_rows()
    assert row["status"] == "pending" and row["lease_owner"] is None
    assert (row["next_attempt_at"] - shop.clock.now()).total_seconds() == 30
    assert await shop.drain() == 0  # not due yet
    shop.clock.advance(31)
    assert await shop.drain() == 1
    (row,) = await shop.outbox_rows()
    assert row["status"] == "sent"
    assert sum(t.startswith("⌛") for t in shop.tg.chat(ALICE).texts()) == 1


async def test_two_senders_send_each_row_once(shop: Harness) -> None:
    buyers = [ALICE + i for i in range(1, 9)]
    for user in buyers:
        await shop.fund(user, 1000, f"seed-{user}")
        await buy_first_whatsapp(shop, user)
    assert await expire_all(shop) == len(buyers)
    other = OutboxSender(
        shop.app.bot, shop.core, owner="second-bot-process", sleep=SleepRecorder(), batch_size=3
    )
    shop.app.sender.batch_size = 3

    async def drain(sender: OutboxSender) -> int:
        total = 0
        while n := await sender.drain_once():
            total += n
        return total

    counts = await asyncio.gather(drain(shop.app.sender), drain(other))
    assert sum(counts) == len(buyers)
    rows = await shop.outbox_rows()
    assert [r["status"] for r in rows] == ["sent"] * len(buyers)
    for user in buyers:
        notices = [t for t in shop.tg.chat(user).texts() if t.startswith("⌛")]
        assert len(notices) == 1, (user, notices)


async def test_rows_to_one_chat_are_spaced_a_second_apart(shop: Harness) -> None:
    await shop.fund(ALICE, 5000, "seed")
    for _ in range(3):
        await buy_first_whatsapp(shop, ALICE)
    assert await expire_all(shop) == 3
    shop.sleeps.waits.clear()
    assert await shop.drain() == 3
    spaced = [w for w in shop.sleeps.waits if w > 0.5]
    assert len(spaced) >= 2 and all(w <= 2.0 for w in spaced)  # 1 s, then 2 s reserved
    assert sum(t.startswith("⌛") for t in shop.tg.chat(ALICE).texts()) == 3


async def test_number_found_by_recovery_updates_the_order_message(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await shop.say(ALICE, "/buy whatsapp ID")
    message_id = shop.find(ALICE, "✅ Buy for")[0].message_id
    shop.sim.set_faults(outcome_unknown_rate=1.0)  # rented upstream, the answer is lost
    await shop.press(ALICE, "✅ Buy for")
    text = shop.tg.chat(ALICE).message(message_id).text
    assert "Getting your number" in text
    (order,) = await shop.orders_of(ALICE)
    assert order.status == "reserving" and (await shop.wallet(ALICE)).held == order.price
    shop.sim.set_faults(outcome_unknown_rate=0.0)
    shop.clock.advance(shop.core.settings.RECOVERY_AFTER_SECONDS + 1)
    assert await shop.core.orders.recover_reserving() == 1
    assert await shop.drain() == 1
    (order,) = await shop.orders_of(ALICE)
    chat = shop.tg.chat(ALICE)
    assert order.status == "waiting"
    assert order.phone in chat.message(message_id).text
    assert chat.message(message_id).button_texts[:2] == ["❌ Cancel & refund", "🔄 Check now"]
    assert chat.last().text.startswith("📱 Your WhatsApp number is ready")
    await shop.assert_books_clean()


async def test_code_found_by_the_poller_completes_the_order_message(shop: Harness) -> None:
    """Nobody tapped anything: the sender sends the code and redraws the order message."""
    await shop.fund(ALICE, 1000, "seed")
    _, message_id = await buy_first_whatsapp(shop, ALICE)
    (order,) = await shop.orders_of(ALICE)
    shop.sim.deliver_code(order.activation_id, code="556677")
    await shop.core.orders.poll_orders([order.id])
    sender_from = len(shop.tg.calls_for(ALICE))
    assert await shop.drain() == 1
    assert [c.method for c in shop.tg.calls_for(ALICE)[sender_from:]] == ["sendMessage", "editMessageText"]
    chat = shop.tg.chat(ALICE)
    assert "556677" in chat.last().text
    assert "Completed" in chat.message(message_id).text
    assert "Code: 556677" in chat.message(message_id).text
    await shop.assert_books_clean()


async def test_staff_alerts_reach_the_staff_chat(shop: Harness) -> None:
    staff_chat = 999
    shop.tg.add_user(staff_chat, first_name="Staff")
    async with shop.core.db.begin() as conn:
        await outbox.enqueue(
            conn,
            kind="staff_alert",
            chat_id=staff_chat,
            payload={"text": "provider <simulator> balance low"},
            dedupe_key="alert:test",
            now=shop.clock.now(),
        )
    assert await shop.drain() == 1
    assert shop.tg.chat(staff_chat).last().text == "🚨 provider <simulator> balance low"
