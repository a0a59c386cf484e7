"""Whole user journeys through the emulator, with the books checked at each step."""

from __future__ import annotations

import re

from core.db.tables import outbox
from tests.e2e.bot.conftest import Harness

ALICE = 5001


def price_in(text: str) -> int:
    """The confirm screen's price in cents."""
    match = re.search(r"Price: \$(\d+)\.(\d\d)", text)
    assert match, text
    return int(match.group(1)) * 100 + int(match.group(2))


async def buy_first_whatsapp(shop: Harness, user: int) -> tuple[int, int]:
    """Menu → Buy → WhatsApp → first country → confirm → Buy. Returns (price, message id)."""
    await shop.say(user, "/start")
    await shop.press(user, "🛒 Buy number")
    await shop.press(user, "WhatsApp")
    countries = shop.tg.chat(user).last()
    assert "choose a country" in countries.text
    await shop.press(
        user, data=countries.buttons[0].callback_data, message_id=countries.message_id
    )  # the cheapest
    confirm = shop.tg.chat(user).last()
    assert "Confirm your order" in confirm.text
    price = price_in(confirm.text)
    answer = await shop.press(user, "✅ Buy for")
    assert answer.text is None, answer
    return price, confirm.message_id


async def test_start_topup_buy_code_completed(shop: Harness) -> None:
    chat = await shop.say(ALICE, "/start", first_name="Alice")
    greeting = chat.last()
    assert "Hi, Alice" in greeting.text
    assert "Available balance: $0.00" in greeting.text
    assert greeting.button_texts == ["🛒 Buy number", "💰 Balance & top up", "📋 My orders", "❓ Help"]

    # Top up 250 Stars = $5.00 (50 Stars per dollar).
    await shop.press(ALICE, "💰 Balance")
    assert "Available: $0.00" in shop.last_text(ALICE)
    await shop.press(ALICE, "⭐ 250 → $5.00")
    invoice = shop.tg.chat(ALICE).last()
    assert invoice.invoice is not None and invoice.invoice.currency == "XTR"
    assert invoice.invoice.total_amount == 250
    await shop.pay_last_invoice(ALICE)
    assert "Payment received: $5.00 added" in shop.last_text(ALICE)
    wallet = await shop.wallet(ALICE)
    assert (wallet.balance, wallet.held, wallet.available) == (500, 0, 500)

    # Buy: the confirm message becomes the order message.
    price, message_id = await buy_first_whatsapp(shop, ALICE)
    order_msg = shop.tg.chat(ALICE).message(message_id)
    (order,) = await shop.orders_of(ALICE)
    assert order.status == "waiting" and order.price == price
    assert order.phone in order_msg.text
    assert any(e["type"] == "code" for e in order_msg.entities)  # the number is copyable
    assert "Waiting for the code" in order_msg.text and "min left" in order_msg.text
    assert order_msg.button_texts[:2] == ["❌ Cancel & refund", "🔄 Check now"]
    wallet = await shop.wallet(ALICE)
    assert (wallet.balance, wallet.held, wallet.available) == (500, price, 500 - price)

    # The code arrives upstream; Check now finds it; the sender delivers it.
    shop.sim.deliver_code(order.activation_id, code="424242", text="Your WhatsApp code is 424-242")
    answer = await shop.press(ALICE, "🔄 Check now")
    assert answer.text == "The code has arrived!"
    sender_from = len(shop.tg.calls_for(ALICE))
    assert await shop.drain() == 1
    # The tap redrew the order message itself; the sender only sends the code.
    assert [c.method for c in shop.tg.calls_for(ALICE)[sender_from:]] == ["sendMessage"]
    chat = shop.tg.chat(ALICE)
    code_msg = chat.last()
    assert code_msg.message_id != message_id
    assert "424242" in code_msg.text and "Your WhatsApp code is 424-242" in code_msg.text
    assert any(e["type"] == "code" for e in code_msg.entities)
    assert "Completed" in chat.message(message_id).text
    assert "Code: 424242" in chat.message(message_id).text
    wallet = await shop.wallet(ALICE)
    assert (wallet.balance, wallet.held, wallet.available) == (500 - price, 0, 500 - price)
    rows = await shop.outbox_rows()
    assert [(r["kind"], r["status"]) for r in rows] == [("completed", "sent")]
    await shop.assert_books_clean()


async def test_buy_then_cancel_refunds_at_once(shop: Harness) -> None:
    await shop.fund(ALICE, 300, "seed")
    price, message_id = await buy_first_whatsapp(shop, ALICE)
    assert (await shop.wallet(ALICE)).available == 300 - price
    answer = await shop.press(ALICE, "❌ Cancel & refund")
    money = f"${price // 100}.{price % 100:02d}"
    assert answer.text is not None and f"{money} refunded" in answer.text
    assert "<" not in answer.text  # a callback toast shows tags literally
    text = shop.tg.chat(ALICE).message(message_id).text
    assert "Cancelled" in text and f"{money} refunded" in text
    assert "available balance is now $3.00" in text
    wallet = await shop.wallet(ALICE)
    assert (wallet.balance, wallet.held, wallet.available) == (300, 0, 300)
    (order,) = await shop.orders_of(ALICE)
    assert order.status == "cancelled"
    # A second tap on the (now gone) Cancel button refunds nothing more.
    again = await shop.press(
        ALICE, data=f"o:cancel:{order.id.replace('-', '')}", message_id=message_id, forge=True
    )
    assert again.text is not None and "already cancelled" in again.text
    assert (await shop.wallet(ALICE)).available == 300
    await shop.assert_books_clean()


async def test_no_code_expires_and_money_comes_back(shop: Harness) -> None:
    await shop.fund(ALICE, 300, "seed")
    price, message_id = await buy_first_whatsapp(shop, ALICE)
    (order,) = await shop.orders_of(ALICE)
    shop.clock.set(order.expires_at)
    shop.clock.advance(1)
    assert await shop.core.orders.expire_due() == 1
    assert await shop.drain() == 1
    chat = shop.tg.chat(ALICE)
    money = f"${price // 100}.{price % 100:02d}"
    assert "No code arrived" in chat.last().text and f"{money} is back" in chat.last().text
    assert "Available balance: $3.00" in chat.last().text
    assert "Expired" in chat.message(message_id).text
    assert chat.message(message_id).button_texts == ["🔁 Another number", "🌍 Other country", "« Menu"]
    wallet = await shop.wallet(ALICE)
    assert (wallet.balance, wallet.held, wallet.available) == (300, 0, 300)
    rows = await shop.outbox_rows()
    assert [(r["kind"], r["status"]) for r in rows] == [("expired", "sent")]
    await shop.assert_books_clean()


async def test_provider_failure_at_rent_is_not_charged(shop: Harness) -> None:
    await shop.fund(ALICE, 300, "seed")
    await shop.say(ALICE, "/buy whatsapp ID")
    assert "Confirm your order" in shop.last_text(ALICE)
    shop.sim.set_faults(transient_error_rate=1.0)
    answer = await shop.press(ALICE, "✅ Buy for")
    assert answer.text is not None and "You were not charged" in answer.text
    assert "provider is unavailable" in shop.last_text(ALICE)
    wallet = await shop.wallet(ALICE)
    assert (wallet.balance, wallet.held, wallet.available) == (300, 0, 300)
    (order,) = await shop.orders_of(ALICE)
    assert order.status == "failed"
    # The user was told in place; nothing is queued for the sender to repeat.
    assert await shop.count(outbox) == 0
    await shop.assert_books_clean()
