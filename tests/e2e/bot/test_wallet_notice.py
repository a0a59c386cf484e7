"""The buyer hears about a staff credit or debit, once, with the new balance."""

from __future__ import annotations

from datetime import datetime

from core.staff import StaffMember, adjust_wallet

from .conftest import Harness

BUYER = 730001


async def test_buyer_is_told_of_a_staff_credit_once(shop: Harness) -> None:
    await shop.say(BUYER, "/start")
    await shop.fund(BUYER, 700, "topup-1")
    admin = StaffMember(1, "admin", "admin", False, datetime(2026, 1, 1), "x")
    before = len(shop.tg.chat(BUYER).bot_messages())
    for _ in range(2):  # the dashboard retries with the same idempotency key
        await adjust_wallet(
            shop.core.wallets,
            admin,
            "credit",
            BUYER,
            500,
            reason="sorry for the outage",
            idempotency_key="form-nonce-1",
            support_credit_limit=0,
        )
    assert await shop.drain() == 1
    messages = shop.tg.chat(BUYER).bot_messages()[before:]
    assert [m.text for m in messages] == ["💳 Support credited $5.00 to your wallet. Balance: $12.00."]

    await adjust_wallet(
        shop.core.wallets,
        admin,
        "debit",
        BUYER,
        200,
        reason="chargeback",
        idempotency_key="form-nonce-2",
        support_credit_limit=0,
    )
    assert await shop.drain() == 1
    assert shop.last_text(BUYER) == "💳 Support debited $2.00 from your wallet. Balance: $10.00."
    assert await shop.drain() == 0
