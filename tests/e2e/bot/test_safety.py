"""What must never happen: double charges, double credits, foreign orders touched, money
moved by garbage input. Each test checks the books and the money, not just the words."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from bot import texts
from core.db.tables import orders, processed_updates, transfers
from core.users import set_blocked
from tests.e2e.bot.conftest import WAIT, Harness, shop_harness
from tests.e2e.bot.test_journeys import buy_first_whatsapp

ALICE, BOB = 6001, 6002


async def open_confirm(shop: Harness, user: int) -> int:
    await shop.say(user, "/buy whatsapp ID")
    confirm = shop.tg.chat(user).last()
    assert "Confirm your order" in confirm.text, confirm.text
    return confirm.message_id


async def holds(shop: Harness) -> int:
    return await shop.count(transfers, transfers.c.kind == "pending")


async def test_double_and_triple_taps_buy_once(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    message_id = await open_confirm(shop, ALICE)
    _, buy_data = shop.find(ALICE, "✅ Buy for")
    # Concurrent: three taps land while the first purchase is still renting.
    shop.sim.set_faults(latency_s=0.5)
    presses = [shop.press_nowait(ALICE, data=buy_data, message_id=message_id) for _ in range(3)]
    answers = [await shop.tg.wait_for_callback_answer(p.query_id, WAIT) for p in presses]
    for p in presses:
        await shop.handled(p.update_id)
    assert sorted(a.text or "" for a in answers) == ["", texts.WORKING, texts.WORKING]
    # Sequential: two more taps (a retried callback, a second device) after it finished.
    shop.sim.set_faults(latency_s=0)
    for _ in range(2):
        again = await shop.press(ALICE, data=buy_data, message_id=message_id, forge=True)
        assert again.text is None
    (order,) = await shop.orders_of(ALICE)
    assert order.status == "waiting"
    assert await holds(shop) == 1
    assert len([c for c in shop.sim.calls if c[0] == "rent"]) == 1
    wallet = await shop.wallet(ALICE)
    assert (wallet.held, wallet.available) == (order.price, 1000 - order.price)
    assert order.phone in shop.tg.chat(ALICE).message(message_id).text
    await shop.assert_books_clean()


async def test_redelivered_update_has_one_effect(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await open_confirm(shop, ALICE)
    press = shop.press_nowait(ALICE, "✅ Buy for")
    await shop.tg.wait_for_callback_answer(press.query_id, WAIT)
    await shop.handled(press.update_id)
    calls_before = len(shop.tg.calls_for(ALICE))
    shop.tg.redeliver(press.update_id)
    await shop.handled(press.update_id, times=2)
    assert shop.tg.update(press.update_id).deliveries == 2
    assert len(shop.tg.calls_for(ALICE)) == calls_before  # dropped: not even answered twice
    assert len(await shop.orders_of(ALICE)) == 1 and await holds(shop) == 1
    # A redelivered /start is dropped too: one greeting.
    update_id = shop.tg.send_text(ALICE, "/start")
    await shop.tg.wait_for_reply(update_id, WAIT)
    await shop.handled(update_id)  # finished (and so recorded), as Telegram's 200 would say
    shop.tg.redeliver(update_id)
    await shop.handled(update_id, times=2)
    assert sum(t.startswith("👋 Hi") for t in shop.tg.chat(ALICE).texts()) == 1
    assert await shop.count(processed_updates, processed_updates.c.update_id == update_id) == 1


async def test_same_stars_payment_twice_credits_once(shop: Harness) -> None:
    await shop.say(ALICE, "/balance")
    await shop.press(ALICE, "⭐ 50 → $1.00")
    payment = await shop.pay_last_invoice(ALICE)
    assert (await shop.wallet(ALICE)).available == 100
    # Reported again as a new message (new update id, same charge id).
    resent = shop.tg.resend_payment(payment.charge_id)
    await shop.tg.wait_for_reply(resent, WAIT)
    assert shop.last_text(ALICE) == texts.TOPUP_ALREADY
    # The very same update redelivered: handled (payments are never dropped), credits nothing.
    shop.tg.redeliver(payment.update_id)
    await shop.handled(payment.update_id, times=2)
    assert (await shop.wallet(ALICE)).available == 100
    assert await shop.count(transfers, transfers.c.code == "topup") == 1
    await shop.assert_books_clean()


async def test_forged_callbacks_are_refused_and_change_nothing(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await shop.fund(BOB, 1000, "seed-bob")
    await buy_first_whatsapp(shop, ALICE)
    (alice_order,) = await shop.orders_of(ALICE)
    await shop.say(BOB, "/start")
    bob_quote_msg = await open_confirm(shop, BOB)
    hex_id = alice_order.id.replace("-", "")
    forged = [
        f"o:cancel:{hex_id}",  # Alice's order, from Bob's client
        f"o:check:{hex_id}",
        f"o:another:{hex_id}",
        f"o:view:{hex_id}",
        f"o:cancel:{uuid.uuid4().hex}",  # an order that does not exist
        f"b:{uuid.uuid4().hex}",  # a quote that does not exist
        "o:cancel:not-a-uuid",
        "b:1;DROP TABLE orders",
        "t:999",  # a Stars package we never offered
        "s:WhatsApp:0",
        "c:whatsapp:gb",
        "sp:-5",
        "garbage",
        "m:admin",
    ]
    before = (await shop.wallet(ALICE), await shop.wallet(BOB))
    for data in forged:
        answer = await shop.press(BOB, data=data, message_id=bob_quote_msg, forge=True)
        assert answer.text == texts.STALE_BUTTON, (data, answer.text)
    # Alice's quote used from Bob's chat: not his, so not found.
    async with shop.core.db.read() as conn:
        alice_quote = await conn.scalar(select(orders.c.quote_id).where(orders.c.id == alice_order.id))
    answer = await shop.press(
        BOB, data=f"b:{uuid.UUID(alice_quote).hex}", message_id=bob_quote_msg, forge=True
    )
    assert answer.text == texts.STALE_BUTTON
    assert (await shop.wallet(ALICE), await shop.wallet(BOB)) == before
    assert (await shop.core.orders.get_order(alice_order.id)).status == "waiting"
    assert await shop.orders_of(BOB) == []
    assert not any(c[0] in ("cancel", "another_code") for c in shop.sim.calls)
    await shop.assert_books_clean()


async def test_not_enough_money_offers_top_up_and_buys_nothing(shop: Harness) -> None:
    await shop.fund(ALICE, 5, "seed")
    await open_confirm(shop, ALICE)
    confirm = shop.tg.chat(ALICE).last()
    assert "Not enough money: you need" in confirm.text
    assert any(t.startswith("⭐ Top up $") for t in confirm.button_texts), confirm.button_texts
    assert not any(t.startswith("✅ Buy") for t in confirm.button_texts)
    await shop.press(ALICE, "💰 Other amounts")
    assert "Your balance" in shop.last_text(ALICE)
    assert "crypto" not in shop.last_text(ALICE)  # no Crypto Pay token: Stars only
    assert await shop.orders_of(ALICE) == []


async def test_insufficient_funds_at_buy_time(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await open_confirm(shop, ALICE)
    await shop.core.wallets.debit(ALICE, 990, reason="test drain")
    message_id = shop.tg.chat(ALICE).last().message_id
    answer = await shop.press(ALICE, "✅ Buy for")
    assert answer.text == texts.not_enough_toast()
    # The screen is redrawn in place with a top-up of the difference instead of Buy.
    redrawn = shop.tg.chat(ALICE).message(message_id)
    assert "Not enough money: you need" in redrawn.text
    assert redrawn.button_texts[0].startswith("⭐ Top up $")
    assert await shop.orders_of(ALICE) == [] and await holds(shop) == 0
    assert (await shop.wallet(ALICE)).available == 10


async def test_blocked_user_cannot_buy(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await open_confirm(shop, ALICE)
    user = await shop.wallet(ALICE)
    async with shop.core.db.begin() as conn:
        await set_blocked(conn, user.user_id, True)
    answer = await shop.press(ALICE, "✅ Buy for")
    assert answer.text == texts.BLOCKED
    assert await shop.orders_of(ALICE) == [] and (await shop.wallet(ALICE)).available == 1000


async def test_out_of_stock_and_expired_quote(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    message_id = await open_confirm(shop, ALICE)
    shop.clock.advance(shop.core.settings.QUOTE_TTL_SECONDS + 1)
    answer = await shop.press(ALICE, "✅ Buy for")
    assert answer.text == texts.price_expired_toast()
    redrawn = shop.tg.chat(ALICE).message(message_id)
    assert "That price had expired" in redrawn.text
    assert redrawn.button_texts[0].startswith("✅ Buy for")
    assert await shop.orders_of(ALICE) == []
    await open_confirm(shop, ALICE)
    shop.sim.set_faults(out_of_stock=True)
    answer = await shop.press(ALICE, "✅ Buy for")
    assert answer.text == texts.not_charged("out_of_stock")
    assert "ran out" in shop.last_text(ALICE)
    (failed,) = await shop.orders_of(ALICE)
    assert failed.status == "failed"
    assert (await shop.wallet(ALICE)).available == 1000
    await shop.assert_books_clean()


async def test_rate_limited_user_is_told_and_nothing_happens(db, clock) -> None:
    async with shop_harness(db, clock, app_options={"rate_per_second": 0.001, "rate_burst": 3}) as shop:
        ids = [shop.tg.send_text(ALICE, "whatsapp") for _ in range(6)]
        for update_id in ids:
            await shop.handled(update_id)
        replies = shop.tg.chat(ALICE).texts()
        assert replies.count(texts.RATE_LIMITED) == 1  # told once, not once per message
        assert sum("choose a country" in t for t in replies) == 3
        # Buttons are refused with an answer, and the limit protects money paths too.
        answer = await shop.press(ALICE, "🇮🇩")
        assert answer.text == texts.RATE_LIMITED
        assert await shop.count(orders) == 0
