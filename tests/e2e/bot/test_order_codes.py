"""The order after its first code, the live timer and the copy buttons, through the Bot API
emulator as a buyer sees them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CopyTextButton, InlineKeyboardButton, InlineKeyboardMarkup

from bot import texts
from core import favourites
from core.db.tables import outbox
from tests.e2e.bot.conftest import Harness, shop_harness
from tests.e2e.bot.test_journeys import buy_first_whatsapp

ALICE = 7101
BOB = 7102


@pytest.fixture
async def timed(db, clock) -> AsyncIterator[Harness]:
    """The shop with its sender's rate limits on the fake clock, as the timer runs on it."""
    options = {"rate_burst": 1000, "sender_options": {"monotonic": lambda: clock.now().timestamp()}}
    async with shop_harness(db, clock, app_options=options) as harness:
        yield harness


def _copies(message) -> dict[str, str]:
    return {b.text: b.copy_text for b in message.buttons if b.copy_text is not None}


async def _with_first_code(shop: Harness, user: int) -> tuple[int, object]:
    await shop.fund(user, 1000, "seed")
    _, message_id = await buy_first_whatsapp(shop, user)
    (order,) = await shop.orders_of(user)
    shop.sim.deliver_code(order.activation_id, code="111111")
    await shop.press(user, "🔄 Check now")
    assert await shop.drain() == 1
    return message_id, order


async def test_two_codes_one_charge_then_done_finishes_upstream_once(shop: Harness) -> None:
    message_id, order = await _with_first_code(shop, ALICE)
    screen = shop.tg.chat(ALICE).message(message_id)
    assert "Completed" in screen.text and "stays open for more codes until" in screen.text
    assert screen.button_texts[:4] == ["📋 Copy code", "📋 Copy number", "📨 Another code", "✅ Done"]
    assert "⚠️ Code didn't work" in screen.button_texts and "🔁 Buy again" in screen.button_texts
    assert texts.btn_favourite(False) in screen.button_texts

    answer = await shop.press(ALICE, "📨 Another code")
    assert answer.text == texts.another_requested()
    again = await shop.press(ALICE, "📨 Another code")  # a double tap asks once
    assert again.text == texts.another_already()
    assert shop.sim.calls.count(("another_code", order.activation_id)) == 1
    shop.sim.deliver_code(order.activation_id, code="222222")
    await shop.core.orders.poll_orders([order.id])
    assert await shop.drain() == 1
    codes = [m for m in shop.tg.chat(ALICE).bot_messages() if (m.text or "").startswith("📩")]
    assert ["111111" in codes[0].text, "222222" in codes[1].text] == [True, True]
    assert _copies(codes[1]) == {"📋 Copy code": "222222"}
    assert "🔁 Buy again" in codes[1].button_texts
    wallet = await shop.wallet(ALICE)
    assert (wallet.balance, wallet.held) == (1000 - order.price, 0)  # one charge for two codes

    answer = await shop.press(ALICE, "✅ Done")
    assert answer.text == texts.done_ok()
    await shop.core.orders.drain_background()
    screen = shop.tg.chat(ALICE).message(message_id)
    assert "✅ Done" not in screen.button_texts and "📨 Another code" not in screen.button_texts
    # A stale Done and a stale Another code: one sentence each, nothing changes.
    data = order.id.replace("-", "")
    done_again = await shop.press(ALICE, data=f"o:done:{data}", message_id=message_id, forge=True)
    assert done_again.text == texts.done_already()
    another = await shop.press(ALICE, data=f"o:another:{data}", message_id=message_id, forge=True)
    assert another.text == texts.another_closed()
    assert shop.sim.calls.count(("finish", order.activation_id)) == 1
    assert shop.sim.calls.count(("another_code", order.activation_id)) == 1
    assert (await shop.wallet(ALICE)).balance == 1000 - order.price
    await shop.assert_books_clean()


async def test_deadline_finishes_upstream_once(shop: Harness) -> None:
    message_id, order = await _with_first_code(shop, ALICE)
    shop.clock.set(order.expires_at)
    assert await shop.core.orders.finish_due() == 1
    assert await shop.core.orders.finish_due() == 0
    after = (await shop.orders_of(ALICE))[0]
    assert after.upstream_state == "finished"
    assert shop.sim.calls.count(("finish", order.activation_id)) == 1
    answer = await shop.press(ALICE, "📨 Another code")  # the old screen's button
    assert answer.text == texts.another_closed()
    screen = shop.tg.chat(ALICE).message(message_id)
    assert "📨 Another code" not in screen.button_texts and "🔁 Buy again" in screen.button_texts
    await shop.assert_books_clean()


async def test_forged_and_foreign_callbacks_change_nothing(shop: Harness) -> None:
    _, order = await _with_first_code(shop, ALICE)
    await shop.say(BOB, "/start")
    data = order.id.replace("-", "")
    for action in ("done", "another"):
        answer = await shop.press(BOB, data=f"o:{action}:{data}", forge=True)
        assert answer.text == texts.STALE_BUTTON
    garbage = await shop.press(BOB, data="o:done:not-a-uuid", forge=True)
    assert garbage.text == texts.STALE_BUTTON
    assert shop.sim.calls.count(("finish", order.activation_id)) == 0
    assert (await shop.orders_of(ALICE))[0].upstream_state == "active"


async def test_waiting_screen_has_copy_buttons_and_a_live_timer(timed: Harness) -> None:
    shop = timed
    await shop.fund(ALICE, 1000, "seed")
    _, message_id = await buy_first_whatsapp(shop, ALICE)
    (order,) = await shop.orders_of(ALICE)
    screen = shop.tg.chat(ALICE).message(message_id)
    full, calling, national = texts.split_phone(order.phone, order.country)
    assert full == order.phone and calling and full == f"+{calling}{national}"
    assert _copies(screen) == {"📋 Copy number": full, f"📋 Without +{calling}": national}
    clock = order.expires_at.strftime("%H:%M")
    assert f"20 min left (until {clock} UTC)" in screen.text

    # 20 simulated minutes: the timer job every 5 s, the sender after it.
    shown: list[int] = []
    edits_before = sum(1 for c in shop.tg.calls_for(ALICE) if c.method == "editMessageText")
    while shop.clock.now() < order.expires_at:
        shop.clock.advance(5)
        await shop.core.orders.redraw_due()
        await shop.drain()
        text = shop.tg.chat(ALICE).message(message_id).text
        found = re.search(r"(\d+) min left", text)
        if found and (not shown or shown[-1] != int(found.group(1))):
            shown.append(int(found.group(1)))
    assert shown == list(range(20, 0, -1))  # every minute, in order, none skipped
    edits = sum(1 for c in shop.tg.calls_for(ALICE) if c.method == "editMessageText") - edits_before
    assert edits == 19  # one redraw per minute change, no more
    reminders = [t for t in shop.tg.chat(ALICE).texts() if t.startswith("⏰")]
    assert len(reminders) == 1 and "5 min left" in reminders[0]
    rows = await shop.outbox_rows()
    assert sum(1 for r in rows if r["kind"] == "order_redraw") == 19
    # The per-chat spacing held: the sender never had to wait for this chat's slot twice.
    assert all(w <= 1.0 for w in shop.sleeps.waits)
    await shop.core.orders.expire_due()
    await shop.drain()
    assert "Expired" in shop.tg.chat(ALICE).message(message_id).text
    await shop.assert_books_clean()


async def test_pending_redraws_are_coalesced_per_message(timed: Harness) -> None:
    shop = timed
    await shop.fund(ALICE, 1000, "seed")
    await buy_first_whatsapp(shop, ALICE)
    (order,) = await shop.orders_of(ALICE)
    for _ in range(5):  # the sender is down for five minutes
        shop.clock.advance(60)
        await shop.core.orders.redraw_due()
    pending = [r for r in await shop.outbox_rows() if r["kind"] == "order_redraw"]
    assert len(pending) == 1 and pending[0]["payload"]["minutes_left"] == 15
    assert await shop.drain() == 1
    assert "15 min left" in shop.tg.chat(ALICE).message(order.message_id).text
    assert await shop.count(outbox, outbox.c.status == "pending") == 0


async def test_the_emulator_checks_copy_text_buttons_like_telegram(shop: Harness) -> None:
    await shop.say(ALICE, "/start")

    def markup(value: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="Copy", copy_text=CopyTextButton(text=value))]]
        )

    sent = await shop.app.bot.send_message(ALICE, "copy me", reply_markup=markup("x" * 256))
    (button,) = shop.tg.chat(ALICE).message(sent.message_id).buttons
    assert button.copy_text == "x" * 256 and button.callback_data is None
    for bad in ("", "x" * 257):
        with pytest.raises(TelegramBadRequest):
            await shop.app.bot.send_message(ALICE, "copy me", reply_markup=markup(bad))


async def test_the_star_on_an_order_saves_the_pair_and_leaves_the_order_on_screen(shop: Harness) -> None:
    message_id, order = await _with_first_code(shop, ALICE)
    before = shop.tg.chat(ALICE).message(message_id).text
    answer = await shop.press(ALICE, texts.btn_favourite(False))
    assert answer.text is not None and answer.text.startswith("⭐ Saved")
    assert shop.tg.chat(ALICE).message(message_id).text == before  # still the order, not a confirm screen
    assert await favourites.is_favourite(
        shop.core.db,
        user_id=order.user_id,  # type: ignore[attr-defined]
        service=order.service,  # type: ignore[attr-defined]
        country=order.country,  # type: ignore[attr-defined]
    )
