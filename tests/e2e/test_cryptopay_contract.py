"""The Crypto Pay adapter against a fake written from ``reference/crypto-pay-api.md``.

Checks what the wire must look like (the token header, fiat invoices with accepted assets,
decimal-string amounts, ``invoice_ids`` batched into one ``getInvoices``), how the documented
replies are read (``ok``/``result``/``error``, ``items``), how failures surface, the webhook
signature rule (raw bytes, key = SHA-256 of the token), and start-up checks of the settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from core.config import ConfigError, load_settings
from core.cryptopay_wire import CryptoPayClient, CryptoPayError, PayloadSigner, webhook_signature_ok
from numbershop.cli import main
from tests.e2e.fakes.cryptopay_server import FakeCryptoPay


@pytest.fixture
async def fake(clock) -> AsyncIterator[FakeCryptoPay]:
    server = FakeCryptoPay(clock)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(fake) -> AsyncIterator[CryptoPayClient]:
    c = CryptoPayClient(fake.base_url, fake.token)
    yield c
    await c.aclose()


async def test_every_call_carries_the_token_and_a_wrong_one_is_an_error(fake, client) -> None:
    me = await client.get_me()
    assert me["app_id"] == 7
    assert all(c.headers.get("Crypto-Pay-API-Token") == fake.token for c in fake.calls)
    wrong = CryptoPayClient(fake.base_url, "other-token")
    try:
        with pytest.raises(CryptoPayError, match="401 UNAUTHORIZED") as info:
            await wrong.get_me()
        assert "other-token" not in str(info.value)
    finally:
        await wrong.aclose()


async def test_create_invoice_is_fiat_with_accepted_assets_and_reads_the_invoice(fake, client) -> None:
    invoice = await client.create_invoice(
        fiat="USD",
        amount="12.50",
        accepted_assets=("USDT", "TON"),
        payload="p-1",
        description="d",
        expires_in=3600,
    )
    sent = fake.calls_to("createInvoice")[0].body
    assert sent["currency_type"] == "fiat" and sent["fiat"] == "USD" and sent["amount"] == "12.50"
    assert sent["accepted_assets"] == "USDT,TON" and sent["expires_in"] == 3600
    assert invoice.status == "active" and invoice.amount == Decimal("12.50") and invoice.payload == "p-1"
    assert invoice.pay_url == fake.invoices[invoice.invoice_id]["bot_invoice_url"]
    assert invoice.expiration_date is not None


async def test_documented_errors_and_lost_replies_are_errors(fake, client) -> None:
    with pytest.raises(CryptoPayError, match="ACCEPTED_ASSETS_INVALID"):
        await client.create_invoice(
            fiat="USD", amount="1.00", accepted_assets=("DOGE1",), payload="p", description="d", expires_in=60
        )
    fake.script("getInvoices", reset=True)
    with pytest.raises(CryptoPayError, match="getInvoices"):
        await client.get_invoices([1])
    fake.script("getInvoices", status=502, body="<html>bad gateway</html>", content_type="text/html")
    with pytest.raises(CryptoPayError, match="not JSON"):
        await client.get_invoices([1])


async def test_get_invoices_asks_by_ids_in_one_call_and_reads_items(fake, client) -> None:
    made = [
        await client.create_invoice(
            fiat="USD",
            amount=f"{n}.00",
            accepted_assets=("USDT",),
            payload=f"p{n}",
            description="d",
            expires_in=60,
        )
        for n in (1, 2, 3)
    ]
    fake.pay(made[1].invoice_id)
    got = await client.get_invoices([made[0].invoice_id, made[1].invoice_id])
    assert {i.invoice_id: i.status for i in got} == {made[0].invoice_id: "active", made[1].invoice_id: "paid"}
    paid = next(i for i in got if i.status == "paid")
    assert paid.paid_asset == "USDT" and paid.paid_amount == "2.00"
    call = fake.calls_to("getInvoices")[-1]
    assert call.body["invoice_ids"] == f"{made[0].invoice_id},{made[1].invoice_id}"


def test_webhook_signature_is_over_the_raw_bytes_keyed_by_the_token_digest(clock) -> None:
    fake = FakeCryptoPay(clock)
    body = fake.webhook_body({"invoice_id": 1, "status": "paid", "amount": "1.00"})
    signature = fake.signature(body)
    assert webhook_signature_ok(body, signature, fake.token)
    assert webhook_signature_ok(body, signature.upper(), fake.token)  # hex case does not matter
    assert not webhook_signature_ok(body.replace(b"\n", b""), signature, fake.token)  # re-serialised
    assert not webhook_signature_ok(body, signature, "another-token")
    assert not webhook_signature_ok(body, "", fake.token)


def test_payload_is_bound_to_row_user_amount_and_currency() -> None:
    signer = PayloadSigner("t-1")
    payload = signer.sign("row-1", 42, 500, "USD")
    assert signer.verify(payload) is not None
    assert signer.verify(payload.replace(".500.", ".5000.")) is None
    assert signer.verify(payload.replace(".42.", ".43.")) is None
    assert PayloadSigner("t-2").verify(payload) is None
    assert signer.verify(None) is None and signer.verify("x" * 300) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CRYPTOPAY_URL", "https://pay.example.com"),
        ("CRYPTOPAY_URL", "http://pay.crypt.bot"),
        ("CRYPTOPAY_ASSETS", "USDT,b@d"),
        ("CRYPTOPAY_ASSETS", " , "),
        ("CRYPTOPAY_TOKEN", "two words"),
    ],
)
def test_bad_settings_exit_2_with_one_line_naming_the_variable(
    tmp_path, monkeypatch, capsys, name, value
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/x.db")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()
    code = main(["db", "current"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in err, err


def test_mainnet_testnet_and_loopback_urls_are_accepted() -> None:
    for url in ("https://pay.crypt.bot", "https://testnet-pay.crypt.bot/", "http://127.0.0.1:8088/cryptopay"):
        assert url.rstrip("/") == load_settings(CRYPTOPAY_URL=url).CRYPTOPAY_URL
    assert load_settings(CRYPTOPAY_ASSETS="usdt, ton").CRYPTOPAY_ASSETS == ("USDT", "TON")
    with pytest.raises(
        ConfigError, match="CRYPTOPAY_TOKEN: Crypto Pay cannot price invoices in SHOP_CURRENCY JPY"
    ):
        load_settings(CRYPTOPAY_TOKEN="t", SHOP_CURRENCY="JPY")
