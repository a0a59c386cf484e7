"""Promo codes, referrals and Stars refunds through the emulator, money checked each step."""

from __future__ import annotations

import re

import pytest

from core import referrals
from core.star_refunds import Status
from tests.e2e.bot.conftest import Harness
from tests.e2e.bot.test_journeys import buy_first_whatsapp

ALICE, BOB = 6101, 6102


async def say_all(shop: Harness, user: int, text: str):
    """Like ``say``, but waits until the handler finished (it may send several messages)."""
    update_id = shop.tg.send_text(user, text)
    await shop.handled(update_id)
    return shop.tg.chat(user)


async def test_redeem_with_command_and_start_link(shop: Harness) -> None:
    await shop.core.promos.create("WELCOME5", amount=500, max_uses=10, actor="test")
    await shop.core.promos.create("LINK2", amount=200, max_uses=10, actor="test")

    await shop.say(ALICE, "/promo")
    assert "Send your promo code like this" in shop.last_text(ALICE)
    await shop.say(ALICE, "/promo welcome5")
    assert shop.last_text(ALICE) == (
        "🎁 Promo code WELCOME5 added $5.00 to your balance.\nAvailable balance: $5.00"
    )
    await shop.say(ALICE, "/promo WELCOME5")
    assert "already used the promo code WELCOME5" in shop.last_text(ALICE)
    await shop.say(ALICE, "/promo <b>x</b>")
    assert "doesn't look like a promo code" in shop.last_text(ALICE)
    await shop.say(ALICE, "/promo NOSUCH")
    assert "There is no promo code NOSUCH" in shop.last_text(ALICE)
    assert (await shop.wallet(ALICE)).available == 500

    chat = await say_all(shop, ALICE, "/start promo_LINK2")
    texts = [m.text or "" for m in chat.bot_messages()[-2:]]
    assert "Available balance" in texts[0]  # the greeting first, then the credit
    assert texts[1].startswith("🎁 Promo code LINK2 added $2.00")
    assert (await shop.wallet(ALICE)).available == 700
    await shop.assert_books_clean()


async def test_join_by_referral_and_earn_on_the_referees_purchase(shop: Harness) -> None:
    await shop.say(ALICE, "/start")
    await shop.say(ALICE, "/referral")
    text = shop.last_text(ALICE)
    match = re.search(r"https://t\.me/numbershop_test_bot\?start=ref_([a-z0-9]+)", text)
    assert match, text
    assert "0 people joined · earned $0.00" in text

    chat = await say_all(shop, BOB, f"/start ref_{match.group(1)}")
    assert any("joined through a friend's invitation" in (m.text or "") for m in chat.bot_messages())
    await shop.say(BOB, f"/start ref_{match.group(1)}")  # a second start changes nothing
    await shop.say(ALICE, f"/start ref_{match.group(1)}")  # never to oneself

    await shop.fund(BOB, 1000, "bob-topup")
    price, _message_id = await buy_first_whatsapp(shop, BOB)
    (order,) = await shop.orders_of(BOB)
    shop.sim.deliver_code(order.activation_id, code="135790", text="code 135790")
    assert (await shop.press(BOB, "🔄 Check now")).text == "The code has arrived!"
    reward = referrals.reward_for(price, shop.core.settings.REFERRAL_PERCENT)
    assert reward > 0
    assert (await shop.wallet(ALICE)).available == reward
    assert (await shop.wallet(BOB)).available == 1000 - price

    await shop.say(ALICE, "/referral")
    assert "1 person joined" in shop.last_text(ALICE)
    assert f"earned ${reward // 100}.{reward % 100:02d}" in shop.last_text(ALICE)
    await shop.assert_books_clean()


async def test_refund_stars_through_the_bot_api(shop: Harness) -> None:
    await shop.say(ALICE, "/start")
    await shop.press(ALICE, "💰 Balance")
    await shop.press(ALICE, "⭐ 250 → $5.00")
    payment = await shop.pay_last_invoice(ALICE)
    assert (await shop.wallet(ALICE)).available == 500

    done = await shop.core.star_refunds.refund(payment.charge_id, reason="asked on /paysupport", actor="t")
    assert (done.status, done.amount, done.created) == (Status.REFUNDED, 500, True)
    wallet = await shop.wallet(ALICE)
    assert (wallet.balance, wallet.held, wallet.available) == (0, 0, 0)
    assert [c.method for c in shop.tg.calls_for(ALICE)].count("refundStarPayment") == 1
    again = await shop.core.star_refunds.refund(payment.charge_id, reason="again", actor="t")
    assert (again.status, again.created) == (Status.REFUNDED, False)
    assert [c.method for c in shop.tg.calls_for(ALICE)].count("refundStarPayment") == 1
    await shop.assert_books_clean()


async def test_the_bot_api_port_maps_the_emulators_answers(shop: Harness) -> None:
    from core.star_refunds import BotApiStarRefunds, StarRefundRejected, StarRefundUnavailable

    await shop.say(ALICE, "/start")
    await shop.press(ALICE, "💰 Balance")
    await shop.press(ALICE, "⭐ 250 → $5.00")
    payment = await shop.pay_last_invoice(ALICE)
    settings = shop.core.settings
    port = BotApiStarRefunds(settings.TELEGRAM_API_URL, settings.BOT_TOKEN or "")
    with pytest.raises(StarRefundRejected) as missing:
        await port.refund_star_payment(ALICE, "no-such-charge")
    assert missing.value.code == "CHARGE_NOT_FOUND"
    with pytest.raises(StarRefundRejected) as not_theirs:
        await port.refund_star_payment(BOB, payment.charge_id)
    assert not_theirs.value.code == "CHARGE_NOT_FOUND"
    await port.refund_star_payment(ALICE, payment.charge_id)
    with pytest.raises(StarRefundRejected) as twice:
        await port.refund_star_payment(ALICE, payment.charge_id)
    assert twice.value.code == "CHARGE_ALREADY_REFUNDED"
    # Telegram already refunded it (say, an earlier answer was lost): the shop's refund
    # completes on CHARGE_ALREADY_REFUNDED instead of releasing the hold.
    done = await shop.core.star_refunds.refund(payment.charge_id, reason="lost answer", actor="t")
    assert done.status == Status.REFUNDED and (await shop.wallet(ALICE)).available == 0
    with pytest.raises(StarRefundUnavailable):
        await BotApiStarRefunds("http://127.0.0.1:9", "x", timeout=2).refund_star_payment(ALICE, "c")
    await shop.assert_books_clean()
