"""Browsing, searching, /buy, My orders, Help, custom top-ups and the invoice checks."""

from __future__ import annotations

from datetime import timedelta

from bot import texts
from bot.invoices import InvoiceSigner, amount_bounds, credit_for_stars, stars_for_amount
from tests.e2e.bot.conftest import WAIT, Harness, shop_harness
from tests.e2e.bot.test_journeys import buy_first_whatsapp

ALICE, BOB = 8001, 8002


async def test_services_are_paged_most_popular_first(shop: Harness) -> None:
    await shop.say(ALICE, "/start")
    await shop.press(ALICE, "🛒 Buy number")
    first = shop.tg.chat(ALICE).last()
    names = [t.split(" · ")[0] for t in first.button_texts[:8]]
    assert names[:3] == ["WhatsApp", "Telegram", "Google / Gmail / YouTube"]
    assert "$" in first.button_texts[0]
    assert "Next ›" in first.button_texts and "‹ Prev" not in first.button_texts
    await shop.press(ALICE, "Next ›")
    second = shop.tg.chat(ALICE).message(first.message_id)  # edited in place
    assert second.button_texts[0].split(" · ")[0] not in names
    assert "‹ Prev" in second.button_texts and "page 2/" in second.text
    await shop.press(ALICE, "‹ Prev")
    assert shop.tg.chat(ALICE).message(first.message_id).button_texts[:8] == first.button_texts[:8]


async def test_typing_searches_services(shop: Harness) -> None:
    chat = await shop.say(ALICE, "whatsapp")
    assert "WhatsApp: choose a country" in chat.last().text  # an exact name opens it
    await shop.say(ALICE, "/start")
    chat = await shop.say(ALICE, "whats")  # a word start is a guess: the buyer taps it
    assert "Services matching “whats” (1)" in chat.last().text
    chat = await shop.say(ALICE, "o")
    assert "Services matching “o”" in chat.last().text
    assert "Type more letters" in chat.last().text
    chat = await shop.say(ALICE, "<b>nothing</b>")
    assert chat.last().text.startswith("No service matches “<b>nothing</b>”.")
    assert "🛒 All services" in chat.last().button_texts


async def test_buy_command_jumps_ahead(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    chat = await shop.say(ALICE, "/buy whatsapp indonesia")
    assert "Confirm your order" in chat.last().text and "Indonesia" in chat.last().text
    chat = await shop.say(ALICE, "/buy telegram")
    assert "Telegram: choose a country" in chat.last().text
    chat = await shop.say(ALICE, "/buy whatsapp atlantis")
    assert "No numbers for WhatsApp in “atlantis”" in chat.last().text
    chat = await shop.say(ALICE, "/buy zzzz")
    assert chat.last().text.startswith("No service matches")
    chat = await shop.say(ALICE, "/buy")
    assert "Choose a service" in chat.last().text


async def test_my_orders_lists_and_opens_orders(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    chat = await shop.say(ALICE, "/orders")
    assert chat.last().text == texts.history_title("all", 0, True)
    await buy_first_whatsapp(shop, ALICE)
    await shop.press(ALICE, "❌ Cancel & refund")
    shop.clock.advance(60)  # newest first needs distinct times; the fake clock stands still
    await buy_first_whatsapp(shop, ALICE)
    chat = await shop.say(ALICE, "/orders")
    listing = chat.last()
    assert "1. ⏳ WhatsApp" in listing.text and "Waiting for the code" in listing.text
    assert "2. ❌" in listing.text and "Cancelled" in listing.text
    await shop.press(ALICE, "❌ 2")  # open the cancelled one
    opened = shop.tg.chat(ALICE).message(listing.message_id)
    assert "Cancelled" in opened.text and "is back on your balance" in opened.text
    assert opened.button_texts == ["🔁 Another number", "🌍 Other country", "« My orders", "« Menu"]
    await shop.press(ALICE, "« My orders")
    assert "My orders" in shop.tg.chat(ALICE).message(listing.message_id).text


async def test_help_states_the_refund_rules(shop: Harness) -> None:
    chat = await shop.say(ALICE, "/help")
    assert "Refund rules" in chat.last().text
    assert "full price goes back" in chat.last().text
    await shop.press(ALICE, "« Menu")
    await shop.press(ALICE, "❓ Help")
    assert "Refund rules" in shop.last_text(ALICE)


async def test_check_now_without_a_code_and_another_code(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    _, message_id = await buy_first_whatsapp(shop, ALICE)
    answer = await shop.press(ALICE, "🔄 Check now")
    assert answer.text == texts.CHECKED_NOTHING
    (order,) = await shop.orders_of(ALICE)
    shop.sim.deliver_code(order.activation_id, code="111111")
    await shop.press(ALICE, "🔄 Check now")
    assert await shop.drain() == 1
    answer = await shop.press(ALICE, "📨 Another code")
    assert answer.text == texts.another_requested()
    shop.sim.deliver_code(order.activation_id, code="222222")
    await shop.core.orders.poll_orders([order.id])
    assert await shop.drain() == 1
    codes = [t for t in shop.tg.chat(ALICE).texts() if t.startswith("📩")]
    assert ["111111" in codes[0], "222222" in codes[1]] == [True, True]
    # The second code is free: one capture, price paid once.
    assert (await shop.wallet(ALICE)).available == 1000 - order.price
    await shop.assert_books_clean()


async def test_custom_amount_top_up(shop: Harness) -> None:
    await shop.say(ALICE, "/balance")
    await shop.press(ALICE, "✏️ Other amount")
    assert "Type the amount to add in USD" in shop.last_text(ALICE)
    chat = await shop.say(ALICE, "lots")
    assert chat.last().text.startswith("That is not an amount")
    chat = await shop.say(ALICE, "7.25")
    invoice = chat.last().invoice
    assert invoice is not None and invoice.total_amount == 363  # 7.25 × 50, rounded up
    await shop.pay_last_invoice(ALICE)
    assert (await shop.wallet(ALICE)).available == 726  # 363 Stars buy $7.26
    assert "Payment received: $7.26 added" in shop.last_text(ALICE)
    chat = await shop.say(ALICE, "whatsapp")  # no longer typing an amount: a search again
    assert "WhatsApp: choose a country" in chat.last().text


async def test_stale_invoice_is_refused_at_checkout(shop: Harness) -> None:
    await shop.say(ALICE, "/balance")
    await shop.press(ALICE, "⭐ 50 → $1.00")
    shop.clock.advance(timedelta(days=2).total_seconds())
    payment = await shop.tg.pay_invoice(ALICE, timeout=WAIT)
    assert payment.status == "declined" and payment.error_message == texts.INVOICE_INVALID
    assert (await shop.wallet(ALICE)).available == 0


def test_invoice_payload_is_bound_to_user_amount_and_signature(clock) -> None:
    signer = InvoiceSigner("secret")
    inv = signer.issue(42, 250, 500, clock.now())
    ok = dict(telegram_id=42, currency="XTR", total_amount=250, now=clock.now())
    assert signer.verify(inv.payload, **ok) == inv
    assert signer.verify(inv.payload, **{**ok, "telegram_id": 43}) is None
    assert signer.verify(inv.payload, **{**ok, "total_amount": 1}) is None
    assert signer.verify(inv.payload, **{**ok, "currency": "USD"}) is None
    assert InvoiceSigner("other").verify(inv.payload, **ok) is None
    body, _, sig = inv.payload.rpartition(".")
    assert signer.verify(body.replace(".500.", ".50000.") + "." + sig, **ok) is None
    assert signer.verify("garbage", **ok) is None
    assert signer.verify(inv.payload + "x" * 200, **ok) is None


def test_stars_conversion_never_credits_more_than_paid() -> None:
    assert credit_for_stars(250, 50, "USD") == 500
    assert credit_for_stars(1, 75, "USD") == 1  # 1.33 cents → 1
    assert stars_for_amount(725, 50, "USD") == 363
    for amount in range(1, 2000):
        stars = stars_for_amount(amount, 75, "USD")
        assert credit_for_stars(stars, 75, "USD") >= amount
        assert credit_for_stars(stars - 1, 75, "USD") < amount
    assert amount_bounds(50, "USD") == (2, 20000)


async def test_slow_handler_still_gets_its_callback_answered(db, clock) -> None:
    async with shop_harness(db, clock, app_options={"answer_deadline": 0.2, "rate_burst": 100}) as shop:
        await shop.fund(ALICE, 1000, "seed")
        await shop.say(ALICE, "/buy whatsapp ID")
        shop.sim.set_faults(latency_s=1.0)
        press = shop.press_nowait(ALICE, "✅ Buy for")
        answer = await shop.tg.wait_for_callback_answer(press.query_id, WAIT)
        assert answer.text == texts.WORKING
        await shop.handled(press.update_id)
        (order,) = await shop.orders_of(ALICE)
        assert order.phone in shop.last_text(ALICE)


async def test_non_text_messages_get_a_hint(shop: Harness) -> None:
    chat = await shop.say(ALICE, "/nonsense")
    assert chat.last().text == texts.NOT_UNDERSTOOD
