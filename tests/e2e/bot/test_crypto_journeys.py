"""Paying with crypto through the emulator: the webhook path and the polling path.

The buyer taps Balance → Pay with crypto → an amount and gets a pay link; the fake Crypto Pay
server plays @CryptoBot. Either the signed webhook arrives (delivered to core's handler, the
one the dashboard's ``POST /webhooks/cryptopay`` calls) or it is lost and the scheduler's
``cryptopay`` job finds the payment. Both end with the money once and one message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.db.tables import outbox, transfers
from scheduler.tickers import ShopJobs
from tests.e2e.bot.conftest import Harness, shop_harness
from tests.e2e.fakes.cryptopay_server import FakeCryptoPay

BUYER = 5301


@pytest.fixture
async def fake(clock) -> AsyncIterator[FakeCryptoPay]:
    server = FakeCryptoPay(clock)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def shop(db, clock, fake) -> AsyncIterator[Harness]:
    settings = {"CRYPTOPAY_TOKEN": fake.token, "CRYPTOPAY_URL": fake.base_url, "CRYPTOPAY_ASSETS": "USDT,TON"}
    async with shop_harness(db, clock, app_options={"rate_burst": 1000}, settings=settings) as harness:
        yield harness


async def _ask_for_invoice(shop: Harness, fake: FakeCryptoPay) -> int:
    await shop.say(BUYER, "/balance")
    assert "Or pay in crypto through @CryptoBot" in shop.last_text(BUYER)  # the screen says so
    await shop.press(BUYER, "💎 Pay with crypto")
    choice = shop.last_text(BUYER)
    assert "Pay with crypto" in choice and "USDT, TON" in choice
    await shop.press(BUYER, "💎 $5.00")
    invoice_msg = shop.tg.chat(BUYER).last()
    assert (invoice_msg.text or "").startswith("Your invoice for $5.00 is ready")
    pay = invoice_msg.buttons[0]
    assert pay.text == "Pay $5.00 in @CryptoBot"
    (invoice_id,) = list(fake.invoices)
    assert pay.url == fake.invoices[invoice_id]["bot_invoice_url"]
    assert fake.invoices[invoice_id]["amount"] == "5.00" and fake.invoices[invoice_id]["fiat"] == "USD"
    return invoice_id


async def _credit_messages(shop: Harness) -> list[str]:
    return [
        m.text or ""
        for m in shop.tg.chat(BUYER).bot_messages()
        if "Crypto payment received" in (m.text or "")
    ]


async def test_pay_with_crypto_by_webhook(shop: Harness, fake: FakeCryptoPay) -> None:
    invoice_id = await _ask_for_invoice(shop, fake)
    assert (await shop.wallet(BUYER)).balance == 0
    body = fake.webhook_body(fake.pay(invoice_id))
    assert shop.core.cryptopay is not None
    for _ in range(2):  # delivered, then retried by Crypto Pay
        answer = await shop.core.cryptopay.handle_webhook(body, fake.signature(body))
        assert answer.status == 200
    await ShopJobs(shop.core).poll_crypto()  # the poller finds it paid already: nothing more
    await shop.drain()
    assert (await shop.wallet(BUYER)).balance == 500
    assert await _credit_messages(shop) == [
        "✅ Crypto payment received: $5.00 added.\nAvailable balance: $5.00."
    ]
    assert await shop.count(transfers, transfers.c.code == "topup") == 1
    assert await shop.count(outbox, outbox.c.kind == "crypto_topup") == 1
    await shop.assert_books_clean()


async def test_pay_with_crypto_by_polling_when_the_webhook_is_lost(
    shop: Harness, fake: FakeCryptoPay
) -> None:
    invoice_id = await _ask_for_invoice(shop, fake)
    fake.pay(invoice_id)  # no webhook arrives
    jobs = ShopJobs(shop.core)
    assert "cryptopay" in [t.name for t in jobs.tickers()]
    first = await jobs.poll_crypto()
    again = await jobs.poll_crypto()
    assert (first.credited, again.credited) == (1, 0)
    await shop.drain()
    await shop.drain()
    assert (await shop.wallet(BUYER)).balance == 500
    assert len(await _credit_messages(shop)) == 1
    await shop.assert_books_clean()


async def test_typed_amount_out_of_bounds_is_one_sentence_and_no_invoice(
    shop: Harness, fake: FakeCryptoPay
) -> None:
    await shop.say(BUYER, "/balance")
    await shop.press(BUYER, "💎 Pay with crypto")
    await shop.press(BUYER, "✏️ Other amount")
    assert "You will pay it in crypto" in shop.last_text(BUYER)
    await shop.say(BUYER, "abc")
    assert "not an amount I can use" in shop.last_text(BUYER)
    await shop.say(BUYER, "7.50")
    assert "$7.50" in shop.last_text(BUYER)
    assert [i["amount"] for i in fake.invoices.values()] == ["7.50"]


async def test_crypto_down_says_nothing_was_charged(shop: Harness, fake: FakeCryptoPay) -> None:
    fake.script("createInvoice", status=500, body='{"ok": false, "error": {"code": 500, "name": "INTERNAL"}}')
    await shop.say(BUYER, "/balance")
    await shop.press(BUYER, "💎 Pay with crypto")
    await shop.press(BUYER, "💎 $5.00")
    assert "Nothing was charged" in shop.last_text(BUYER)
    assert (await shop.wallet(BUYER)).balance == 0
