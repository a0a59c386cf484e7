"""Crypto Pay top-ups against the fake Crypto Pay server: exactly one credit per invoice.

Each test runs on SQLite and (with ``NUMBERSHOP_TEST_POSTGRES_URL``) PostgreSQL. The races
start the webhook and the poller (or five webhooks) together, each in its own transaction on
its own connection, and check every task's answer, the wallet, the transfers and the outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from core import ledger
from core.config import load_settings
from core.cryptopay import CryptoPay, Outcome, transfer_id_for
from core.db.tables import crypto_invoices, outbox, transfers
from core.invariants import check_invariants
from core.wallets import Wallets
from tests.e2e.fakes.cryptopay_server import FakeCryptoPay

USER = 5151


@pytest.fixture
async def fake(clock) -> AsyncIterator[FakeCryptoPay]:
    server = FakeCryptoPay(clock)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def pay(db, clock, fake) -> AsyncIterator[CryptoPay]:
    settings = load_settings(
        CRYPTOPAY_TOKEN=fake.token, CRYPTOPAY_URL=fake.base_url, CRYPTOPAY_ASSETS="USDT,TON"
    )
    service = CryptoPay(db, clock, settings)
    yield service
    await service.aclose()


async def _wallet(db, clock) -> int:
    return (await Wallets(db, clock).show(USER)).balance


async def _counts(db, invoice_id: int) -> tuple[int, int]:
    async with db.read() as conn:
        moved = await conn.scalar(
            select(func.count()).select_from(transfers).where(transfers.c.id == transfer_id_for(invoice_id))
        )
        told = await conn.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.dedupe_key == f"cryptopay:{invoice_id}")
        )
    return int(moved or 0), int(told or 0)


async def _status(db, row_id: str) -> str:
    async with db.read() as conn:
        return str(await conn.scalar(select(crypto_invoices.c.status).where(crypto_invoices.c.id == row_id)))


async def test_invoice_is_fiat_in_shop_currency_with_our_assets_and_signed_payload(pay, fake, db) -> None:
    created = await pay.create_invoice(USER, 500, description="Top up $5.00")
    call = fake.calls_to("createInvoice")[-1]
    assert call.body["currency_type"] == "fiat" and call.body["fiat"] == "USD"
    assert call.body["amount"] == "5.00" and call.body["accepted_assets"] == "USDT,TON"
    assert pay.signer.verify(call.body["payload"]).row_id == created.id  # type: ignore[union-attr]
    assert created.pay_url.startswith("https://t.me/") and await _status(db, created.id) == "active"


async def test_webhook_credits_once_and_replays_change_nothing(pay, fake, db, clock) -> None:
    created = await pay.create_invoice(USER, 500, description="x")
    body = fake.webhook_body(fake.pay(created.invoice_id))
    first = await pay.handle_webhook(body, fake.signature(body))
    again = await pay.handle_webhook(body, fake.signature(body))
    assert (first.status, first.detail) == (200, "credited")
    assert (again.status, again.detail) == (200, "already credited")
    assert await _wallet(db, clock) == 500
    assert await _counts(db, created.invoice_id) == (1, 1)
    assert await check_invariants(db, clock.now()) == []


async def test_unsigned_wrongly_signed_and_mismatched_deliveries_change_nothing(pay, fake, db, clock) -> None:
    created = await pay.create_invoice(USER, 500, description="x")
    invoice = fake.pay(created.invoice_id)
    body = fake.webhook_body(invoice)
    assert (await pay.handle_webhook(body, None)).status == 401
    assert (await pay.handle_webhook(body, fake.signature(body, token="other"))).status == 401
    assert (await pay.handle_webhook(body + b" ", fake.signature(body))).status == 401  # not these bytes
    for change in ({"amount": "50.00"}, {"fiat": "EUR"}, {"payload": "c1.x.1.500.USD.forged"}):
        forged = fake.webhook_body({**invoice, **change})
        answer = await pay.handle_webhook(forged, fake.signature(forged))
        assert answer.status == 200 and answer.detail.startswith("ignored"), answer
    # Another user's payload on this invoice, validly signed by us: bound to the wrong row.
    other = await pay.create_invoice(USER + 1, 500, description="x")
    swapped = fake.webhook_body({**invoice, "payload": fake.invoices[other.invoice_id]["payload"]})
    assert (await pay.handle_webhook(swapped, fake.signature(swapped))).detail.startswith("ignored")
    unpaid = fake.webhook_body({**invoice, "status": "active"})
    assert (await pay.handle_webhook(unpaid, fake.signature(unpaid))).detail.startswith("ignored")
    assert await _wallet(db, clock) == 0
    assert await _counts(db, created.invoice_id) == (0, 0)
    assert await check_invariants(db, clock.now()) == []


async def test_poller_credits_a_lost_webhook_and_marks_expired(pay, fake, db, clock) -> None:
    paid = await pay.create_invoice(USER, 300, description="x")
    lapsed = await pay.create_invoice(USER, 700, description="x")
    fake.pay(paid.invoice_id)  # the webhook is lost
    fake.expire(lapsed.invoice_id)
    result = await pay.poll()
    assert (result.credited, result.expired) == (1, 1)
    assert await _status(db, paid.id) == "paid" and await _status(db, lapsed.id) == "expired"
    again = await pay.poll()
    assert (again.checked, again.credited) == (0, 0)
    assert await _wallet(db, clock) == 300
    assert await _counts(db, paid.invoice_id) == (1, 1)
    assert len(fake.calls_to("getInvoices")) == 1  # one batched call; nothing left to ask


async def test_poller_expires_an_invoice_crypto_pay_no_longer_lists(pay, fake, db, clock) -> None:
    created = await pay.create_invoice(USER, 300, description="x")
    del fake.invoices[created.invoice_id]  # deleted in the app
    assert (await pay.poll()).expired == 0  # not yet past its end: left alone
    clock.advance(2 * 3600 + 1)
    assert (await pay.poll()).expired == 1
    assert await _status(db, created.id) == "expired"


async def _race(jobs):
    gate = asyncio.Event()

    async def gated(job):
        await gate.wait()
        return await job()

    tasks = [asyncio.create_task(gated(job)) for job in jobs]
    await asyncio.sleep(0)
    gate.set()
    return await asyncio.gather(*tasks)


async def test_race_webhook_and_poller_credit_once(pay, fake, db, clock) -> None:
    created = await pay.create_invoice(USER, 500, description="x")
    body = fake.webhook_body(fake.pay(created.invoice_id))
    hook, polled = await _race([lambda: pay.handle_webhook(body, fake.signature(body)), pay.poll])
    assert hook.status == 200 and hook.detail in ("credited", "already credited")
    assert (hook.detail == "credited") + polled.credited == 1
    assert await _wallet(db, clock) == 500
    assert await _counts(db, created.invoice_id) == (1, 1)
    assert await check_invariants(db, clock.now()) == []


async def test_race_five_concurrent_webhooks_credit_once(pay, fake, db, clock) -> None:
    created = await pay.create_invoice(USER, 500, description="x")
    body = fake.webhook_body(fake.pay(created.invoice_id))
    answers = await _race([lambda: pay.handle_webhook(body, fake.signature(body)) for _ in range(5)])
    assert all(a.status == 200 for a in answers)
    assert sorted(a.detail for a in answers) == ["already credited"] * 4 + ["credited"]
    assert await _wallet(db, clock) == 500
    assert await _counts(db, created.invoice_id) == (1, 1)
    assert await check_invariants(db, clock.now()) == []


async def test_lost_create_reply_then_payment_still_credits(pay, fake, db, clock) -> None:
    fake.script("createInvoice", apply=True, reset=True)  # the invoice exists; its reply is lost
    with pytest.raises(Exception, match="createInvoice"):
        await pay.create_invoice(USER, 400, description="x")
    invoice_id = max(fake.invoices)
    async with db.read() as conn:
        row_id = await conn.scalar(select(crypto_invoices.c.id))
    assert await _status(db, row_id) == "failed"
    body = fake.webhook_body(fake.pay(invoice_id))
    assert (await pay.handle_webhook(body, fake.signature(body))).detail == "credited"
    assert await _wallet(db, clock) == 400 and await _status(db, row_id) == "paid"


async def test_apply_paid_refuses_crypto_currency_invoices(pay, fake, db, clock) -> None:
    created = await pay.create_invoice(USER, 500, description="x")
    invoice = {**fake.pay(created.invoice_id), "currency_type": "crypto", "asset": "USDT"}
    invoice.pop("fiat")
    body = fake.webhook_body(invoice)
    assert (
        await pay.handle_webhook(body, fake.signature(body))
    ).detail == f"ignored: {Outcome.MISMATCH.value}"
    async with db.read() as conn:
        source = await ledger.system_account(conn, "cryptopay")
        assert (await ledger.balance_of(conn, source)).balance == 0


async def test_race_ten_credits_of_one_invoice_from_both_paths(pay, fake, db, clock) -> None:
    """The credit itself under contention: ten transactions at once, webhook and poll mixed."""
    created = await pay.create_invoice(USER, 500, description="x")
    fake.pay(created.invoice_id)
    (remote,) = await pay.client.get_invoices([created.invoice_id])
    outcomes = await _race(
        [lambda i=i: pay.apply_paid(remote, via=("webhook", "poll")[i % 2]) for i in range(10)]
    )
    assert sorted(outcomes) == sorted([Outcome.CREDITED] + [Outcome.ALREADY] * 9)
    assert await _wallet(db, clock) == 500
    assert await _counts(db, created.invoice_id) == (1, 1)
    assert await check_invariants(db, clock.now()) == []
