"""The dashboard's Crypto Pay side: ``POST /webhooks/cryptopay`` and the crypto invoices page.

The webhook is posted as raw bytes with the header Crypto Pay sends; the invoice is created
through the fake Crypto Pay server by the dashboard's own core service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from core.config import load_settings
from core.cryptopay import CryptoPay
from core.db.engine import Database
from core.db.tables import outbox, transfers
from core.orders import OrderService
from core.wallets import Wallets
from tests.e2e.fakes.cryptopay_server import FakeCryptoPay

from .conftest import FakeBoard, balance, count, login

BUYER = 6401


@pytest.fixture
async def fake(clock) -> AsyncIterator[FakeCryptoPay]:
    server = FakeCryptoPay(clock)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def core(shop, db, clock, fake) -> SimpleNamespace:
    app_db = Database(db.url)
    settings = load_settings(CRYPTOPAY_TOKEN=fake.token, CRYPTOPAY_URL=fake.base_url)
    return SimpleNamespace(
        settings=shop.settings,
        db=app_db,
        clock=clock,
        board=FakeBoard(),
        providers=shop.providers,
        wallets=Wallets(app_db, clock, "USD"),
        orders=OrderService(app_db, clock, shop.providers, shop.settings),
        cryptopay=CryptoPay(app_db, clock, settings),
    )


@pytest.fixture
async def pay(db, clock, fake) -> AsyncIterator[CryptoPay]:
    """The same service on the test's own engine (the app's engine lives on the app's loop)."""
    service = CryptoPay(db, clock, load_settings(CRYPTOPAY_TOKEN=fake.token, CRYPTOPAY_URL=fake.base_url))
    yield service
    await service.aclose()


async def _post(client, body: bytes, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["crypto-pay-api-signature"] = signature
    return await client.post("/webhooks/cryptopay", content=body, headers=headers)


async def test_webhook_credits_once_and_refuses_bad_signatures(client, pay, fake, db) -> None:
    created = await pay.create_invoice(BUYER, 250, description="Top up $2.50")
    body = fake.webhook_body(fake.pay(created.invoice_id))
    assert (await _post(client, body, None)).status_code == 401
    assert (await _post(client, body, fake.signature(body, token="wrong"))).status_code == 401
    assert (await balance(db, BUYER)).balance == 0
    first = await _post(client, body, fake.signature(body))
    replay = await _post(client, body, fake.signature(body))
    assert (first.status_code, first.json()["detail"]) == (200, "credited")
    assert (replay.status_code, replay.json()["detail"]) == (200, "already credited")
    assert (await balance(db, BUYER)).balance == 250
    assert await count(db, transfers, transfers.c.reference == f"cryptopay:{created.invoice_id}") == 1
    assert await count(db, outbox, outbox.c.kind == "crypto_topup") == 1
    unknown = fake.webhook_body({**fake.invoices[created.invoice_id], "invoice_id": 999, "payload": "nope"})
    answer = await _post(client, unknown, fake.signature(unknown))
    assert answer.status_code == 200 and answer.json()["detail"].startswith("ignored")
    garbage = b"not json"
    assert (await _post(client, garbage, fake.signature(garbage))).status_code == 400


async def test_crypto_page_is_admin_only_and_lists_invoices(client, pay, fake, staff) -> None:
    created = await pay.create_invoice(BUYER, 250, description="x")
    body = fake.webhook_body(fake.pay(created.invoice_id))
    await pay.handle_webhook(body, fake.signature(body))
    await pay.create_invoice(BUYER, 500, description="x")
    await login(client, "support")
    assert (await client.get("/crypto")).status_code == 403
    await client.post("/logout", follow_redirects=False)
    client.cookies.clear()
    await login(client, "admin")
    page = await client.get("/crypto")
    assert page.status_code == 200
    assert 'href="/crypto"' in page.text  # in the menu
    assert "$2.50" in page.text and "paid" in page.text and "2.50 USDT" in page.text
    assert "$5.00" in page.text and "active" in page.text
    only_paid = await client.get("/crypto?status=paid")
    assert "$2.50" in only_paid.text and "$5.00" not in only_paid.text
    assert (await client.get("/crypto?status=bogus")).status_code == 400
