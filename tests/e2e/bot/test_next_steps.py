"""The next step on every screen, through the emulator with the books checked: the
shortfall top-up that comes back to confirm, Continue after a top-up (fresh, expired, used),
Buy again, Try again, My orders by page and filter, and a "code didn't work" ticket opened
once and resolved from the CLI with a refund."""

from __future__ import annotations

import contextlib
import math
import re

import pytest

from bot import texts
from core import tickets
from core.db.tables import orders, transfers
from numbershop.cli import build_parser
from numbershop.commands import tickets as tickets_cmd
from tests.e2e.bot.conftest import Harness
from tests.e2e.bot.test_journeys import price_in

ALICE, BOB = 9101, 9102


async def open_confirm(shop: Harness, user: int) -> int:
    await shop.say(user, "/buy whatsapp ID")
    confirm = shop.tg.chat(user).last()
    assert "Confirm your order" in confirm.text, confirm.text
    return confirm.message_id


def hex_of(order_id: str) -> str:
    return order_id.replace("-", "")


async def forged(shop: Harness, user: int, data: str):
    return await shop.press(user, data=data, message_id=shop.tg.chat(user).last().message_id, forge=True)


async def completed_order(shop: Harness, user: int):
    await shop.fund(user, 1000, f"seed-{user}")
    await open_confirm(shop, user)
    await shop.press(user, "✅ Buy for")
    order = (await shop.orders_of(user))[0]
    shop.sim.deliver_code(order.activation_id, code="515151")
    await shop.press(user, "🔄 Check now")
    await shop.drain()
    return await shop.core.orders.get_order(order.id)


async def test_confirm_says_how_long_the_price_and_the_number_last(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await open_confirm(shop, ALICE)
    text = shop.last_text(ALICE)
    assert "This price is kept for 10 min." in text
    assert "the number waits up to 30 min for a code" in text


async def test_shortfall_top_up_returns_to_confirm_and_buys(shop: Harness) -> None:
    await shop.fund(ALICE, 5, "seed")
    confirm_id = await open_confirm(shop, ALICE)
    confirm = shop.tg.chat(ALICE).message(confirm_id)
    price = price_in(confirm.text)
    missing = price - 5
    stars = math.ceil(missing * 50 / 100)  # 50 Stars a dollar, rounded up
    credit = stars * 100 // 50
    assert f"you need ${missing // 100}.{missing % 100:02d} more" in confirm.text
    assert confirm.button_texts[0] == f"⭐ Top up ${credit // 100}.{credit % 100:02d} ({stars} Stars)"

    await shop.press(ALICE, "⭐ Top up $")
    invoice = shop.tg.chat(ALICE).last().invoice
    assert invoice is not None and invoice.total_amount == stars
    await shop.pay_last_invoice(ALICE)
    paid = shop.tg.chat(ALICE).last()
    assert "Payment received" in paid.text and "Tap Continue" in paid.text
    assert paid.button_texts[0] == f"Continue: WhatsApp 🇮🇩 ${price // 100}.{price % 100:02d}"
    assert "🛒 Buy a number" in paid.button_texts
    assert (await shop.wallet(ALICE)).available == 5 + credit

    await shop.press(ALICE, "Continue:")
    back = shop.tg.chat(ALICE).message(paid.message_id)  # the same screen, in place
    assert "Confirm your order" in back.text and price_in(back.text) == price
    assert back.button_texts[0].startswith("✅ Buy for")
    await shop.press(ALICE, "✅ Buy for")
    (order,) = await shop.orders_of(ALICE)
    assert order.status == "waiting" and order.price == price
    wallet = await shop.wallet(ALICE)
    assert (wallet.balance, wallet.held, wallet.available) == (5 + credit, price, 5 + credit - price)
    # The used quote's Continue now changes nothing.
    answer = await shop.press(
        ALICE, data=paid.buttons[0].callback_data, message_id=paid.message_id, forge=True
    )
    assert answer.text == texts.continue_used()
    assert await shop.count(orders) == 1
    await shop.assert_books_clean()


async def test_top_up_without_a_confirm_screen_offers_buying(shop: Harness) -> None:
    await shop.say(ALICE, "/balance")
    await shop.press(ALICE, "⭐ 250 → $5.00")
    await shop.pay_last_invoice(ALICE)
    paid = shop.tg.chat(ALICE).last()
    assert paid.button_texts == ["🛒 Buy a number", "« Menu"]
    await shop.press(ALICE, "🛒 Buy a number")
    assert "Choose a service" in shop.tg.chat(ALICE).message(paid.message_id).text


async def test_continue_with_an_expired_price_reprices_in_place(shop: Harness) -> None:
    await shop.fund(ALICE, 5, "seed")
    await open_confirm(shop, ALICE)
    await shop.fund(ALICE, 2000, "more")
    await shop.say(ALICE, "/balance")
    await shop.press(ALICE, "⭐ 50 → $1.00")
    await shop.pay_last_invoice(ALICE)
    paid = shop.tg.chat(ALICE).last()
    shop.clock.advance(shop.core.settings.QUOTE_TTL_SECONDS + 1)
    await shop.press(ALICE, "Continue:")
    screen = shop.tg.chat(ALICE).message(paid.message_id)
    assert "That price had expired" in screen.text and "Confirm your order" in screen.text
    await shop.press(ALICE, "✅ Buy for")
    (order,) = await shop.orders_of(ALICE)
    assert order.status == "waiting"
    assert await shop.count(orders) == 1


async def test_forged_and_foreign_buttons_change_nothing(shop: Harness) -> None:
    order = await completed_order(shop, ALICE)
    await shop.say(BOB, "/start")
    bob_before = len(shop.tg.chat(BOB).bot_messages())
    again = await forged(shop, BOB, f"ag:{hex_of(order.id)}")
    assert again.text == texts.order_not_yours()
    ticket = await forged(shop, BOB, f"o:ticket:{hex_of(order.id)}")
    assert ticket.text == texts.order_not_yours()
    resume = await forged(shop, BOB, "rs:" + "ab" * 16)
    assert resume.text == texts.STALE_BUTTON
    short = await forged(shop, BOB, "sf:" + "cd" * 16)
    assert short.text == texts.STALE_BUTTON
    junk = await forged(shop, BOB, "oh:bogus:0:")
    assert junk.text == texts.STALE_BUTTON
    assert len(shop.tg.chat(BOB).bot_messages()) == bob_before
    assert await shop.count(orders) == 1
    assert await tickets.ticket_of_order(shop.core.db, order.id) is None


async def test_buy_again_and_try_again(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await open_confirm(shop, ALICE)
    await shop.press(ALICE, "✅ Buy for")
    (order,) = await shop.orders_of(ALICE)
    await shop.press(ALICE, "❌ Cancel & refund")
    count = len(shop.tg.chat(ALICE).bot_messages())
    await forged(shop, ALICE, f"ag:{hex_of(order.id)}")
    again = shop.tg.chat(ALICE).last()
    assert len(shop.tg.chat(ALICE).bot_messages()) == count + 1  # a new message; the order stays
    assert "Confirm your order" in again.text and "Indonesia" in again.text
    shop.sim.set_faults(out_of_stock=True)
    await shop.press(ALICE, "✅ Buy for")
    failed = shop.tg.chat(ALICE).message(again.message_id)
    assert "ran out" in failed.text
    assert failed.button_texts[:2] == ["🔁 Try again", "🌍 Other country"]
    shop.sim.set_faults(out_of_stock=False)
    await shop.press(ALICE, "🔁 Try again")
    assert "Confirm your order" in shop.tg.chat(ALICE).message(again.message_id).text
    assert (await shop.wallet(ALICE)).available == 1000
    await shop.assert_books_clean()


async def test_history_pages_and_filters(shop: Harness) -> None:
    await shop.fund(ALICE, 5000, "seed")
    for i in range(7):
        await open_confirm(shop, ALICE)
        await shop.press(ALICE, "✅ Buy for")
        if i < 3:
            await shop.press(ALICE, "❌ Cancel & refund")
        shop.clock.advance(60)
    made = await shop.orders_of(ALICE)  # newest first
    chat = await shop.say(ALICE, "/orders")
    page1 = chat.last()
    assert len(re.findall(r"^\d\. ", page1.text, re.M)) == 5
    assert made[0].phone[-4:] in page1.text
    assert re.search(r"\d\d \w{3}, \d\d:\d\d", page1.text)  # date and time
    assert page1.button_texts.count("🔁 Again") == 5
    assert "« Newest" not in page1.button_texts and "• All •" in page1.button_texts
    await shop.press(ALICE, "Older ›")
    page2 = shop.tg.chat(ALICE).message(page1.message_id)
    assert len(re.findall(r"^\d\. ", page2.text, re.M)) == 2
    assert "Older ›" not in page2.button_texts and "« Newest" in page2.button_texts
    assert made[6].phone[-4:] in page2.text and made[0].phone[-4:] not in page2.text
    await shop.press(ALICE, "Refunded")
    refunded = shop.tg.chat(ALICE).message(page1.message_id)
    assert len(re.findall(r"^\d\. ", refunded.text, re.M)) == 3 and "Waiting" not in refunded.text
    await shop.press(ALICE, "Completed")
    assert "No orders here" in shop.tg.chat(ALICE).message(page1.message_id).text
    await shop.press(ALICE, "Active")
    active = shop.tg.chat(ALICE).message(page1.message_id)
    assert len(re.findall(r"^\d\. ", active.text, re.M)) == 4
    count = len(shop.tg.chat(ALICE).bot_messages())
    await shop.press(ALICE, "🔁 Again")
    assert len(shop.tg.chat(ALICE).bot_messages()) == count + 1
    assert "Confirm your order" in shop.last_text(ALICE)
    for order in made[:4]:
        await shop.core.orders.cancel(order.id, user_id=order.user_id)
    await shop.assert_books_clean()


async def test_ticket_opened_once_and_resolved_from_the_cli(shop: Harness, monkeypatch) -> None:
    order = await completed_order(shop, ALICE)
    price = order.price
    assert (await shop.wallet(ALICE)).balance == 1000 - price
    await forged(shop, ALICE, f"o:ticket:{hex_of(order.id)}")
    opened = shop.tg.chat(ALICE).last()
    assert "we opened ticket #" in opened.text and order.id[:8] in opened.text
    assert opened.button_texts == ["📋 My orders", "« Menu"]
    second = await forged(shop, ALICE, f"o:ticket:{hex_of(order.id)}")
    assert second.text == texts.ticket_refused("exists")
    ticket = await tickets.ticket_of_order(shop.core.db, order.id)
    assert ticket is not None and ticket.state == "open"

    @contextlib.asynccontextmanager
    async def same_core(settings, **kw):
        yield shop.core

    monkeypatch.setattr(tickets_cmd, "open_core", same_core)
    monkeypatch.setattr(tickets_cmd, "load_settings", lambda: shop.core.settings)
    for _ in range(2):  # a repeat refunds nothing more
        argv = ["tickets", "resolve", str(ticket.id), "--note", "Sorry about that."]
        args = build_parser(argv).parse_args(argv)
        assert await args.func(args) == 0
    assert (await shop.wallet(ALICE)).balance == 1000
    assert await shop.count(transfers, transfers.c.code == "refund") == 1
    assert await shop.drain() == 2  # the refund notice and the ticket's outcome
    texts_now = shop.tg.chat(ALICE).texts()
    assert any("Support checked your report" in t and "Sorry about that." in t for t in texts_now)
    await shop.assert_books_clean()


@pytest.mark.parametrize("minutes", [31])
async def test_ticket_too_late_or_not_completed_changes_nothing(shop: Harness, minutes: int) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await open_confirm(shop, ALICE)
    await shop.press(ALICE, "✅ Buy for")
    (waiting,) = await shop.orders_of(ALICE)
    answer = await forged(shop, ALICE, f"o:ticket:{hex_of(waiting.id)}")
    assert answer.text == texts.ticket_refused("not_completed")
    shop.sim.deliver_code(waiting.activation_id, code="626262")
    await shop.press(ALICE, "🔄 Check now")
    shop.clock.advance(minutes * 60)
    answer = await forged(shop, ALICE, f"o:ticket:{hex_of(waiting.id)}")
    assert answer.text == texts.ticket_refused("too_late")
    assert await tickets.ticket_of_order(shop.core.db, waiting.id) is None
