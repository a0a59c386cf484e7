"""The Crypto Pay API on the wire: settings checks, signatures, the signed payload, the client.

Kept apart from the service (``core.cryptopay``) so the rules that decide whether a delivery
is trusted are read in one place:

* **Webhook signature** — Crypto Pay signs the raw request body: the header
  ``crypto-pay-api-signature`` is the hex HMAC-SHA-256 of the exact bytes received, keyed with
  the raw SHA-256 digest of the app token. We check those bytes, never a re-serialised JSON,
  and compare in constant time.
* **Our payload** — every invoice carries ``c1.<row id>.<telegram id>.<amount>.<currency>.<sig>``,
  signed with a key derived from the token under a label of our own (never the webhook key
  itself), so a payment can only credit the user and the amount we issued it for, even if
  someone else's invoice on the same app carried a payload of their choosing.
* **Amounts** are decimal strings; they are parsed with ``Decimal`` and must be exact in the
  shop currency's minor units.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import httpx

from core.money import exponent

log = logging.getLogger(__name__)

MAINNET = "https://pay.crypt.bot"
TESTNET = "https://testnet-pay.crypt.bot"
SIGNATURE_HEADER = "crypto-pay-api-signature"
TOKEN_HEADER = "Crypto-Pay-API-Token"
PAYLOAD_VERSION = "c1"
MAX_PAYLOAD = 256  # ours is ~100 characters; Crypto Pay allows 4 KB
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# The fiat currencies Crypto Pay prices invoices in (reference: "Fiat codes").
FIATS = frozenset(
    [
        "USD",
        "EUR",
        "RUB",
        "BYN",
        "UAH",
        "GBP",
        "CNY",
        "KZT",
        "UZS",
        "GEL",
        "TRY",
        "AMD",
        "THB",
        "INR",
        "BRL",
        "IDR",
        "AZN",
        "AED",
        "PLN",
        "ILS",
    ]
)
_ASSET = re.compile(r"^[A-Z0-9]{2,10}$")
TIMEOUT = httpx.Timeout(connect=5.0, read=15.0, write=10.0, pool=5.0)


# --- settings -------------------------------------------------------------------------------


def check_base_url(value: str) -> str:
    """Mainnet or testnet, or a loopback http(s) URL (the sandbox's simulated server, tests)."""
    value = (value or "").strip().rstrip("/")
    if value in (MAINNET, TESTNET):
        return value
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname in _LOOPBACK and not parts.query:
        return value
    raise ValueError(f"use {MAINNET} (mainnet) or {TESTNET} (testnet)")


def check_assets(items: Iterable[str]) -> tuple[str, ...]:
    assets = tuple(dict.fromkeys(a.strip().upper() for a in items if a.strip()))
    if not assets:
        raise ValueError("name at least one coin, e.g. USDT,TON,BTC")
    for asset in assets:
        if not _ASSET.match(asset):
            raise ValueError(f"{asset!r} is not a coin code such as USDT")
    return assets


# --- signatures -----------------------------------------------------------------------------


def webhook_signature(body: bytes, token: str) -> str:
    """What Crypto Pay puts in ``crypto-pay-api-signature`` for ``body`` (tests, the sandbox)."""
    key = hashlib.sha256(token.encode()).digest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def webhook_signature_ok(body: bytes, header: str | None, token: str) -> bool:
    if not header:
        return False
    expected = webhook_signature(body, token)
    return hmac.compare_digest(header.strip().lower().encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class Payload:
    row_id: str
    telegram_id: int
    amount: int
    currency: str


class PayloadSigner:
    def __init__(self, token: str) -> None:
        self._key = hashlib.sha256(b"numbershop-cryptopay-payload:" + token.encode()).digest()

    def _sig(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]

    def sign(self, row_id: str, telegram_id: int, amount: int, currency: str) -> str:
        body = f"{PAYLOAD_VERSION}.{row_id}.{telegram_id}.{amount}.{currency}"
        return f"{body}.{self._sig(body)}"

    def verify(self, payload: object) -> Payload | None:
        if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD:
            return None
        body, _, sig = payload.rpartition(".")
        if not body or not hmac.compare_digest(sig.encode(), self._sig(body).encode()):
            return None
        parts = body.split(".")
        if len(parts) != 5 or parts[0] != PAYLOAD_VERSION:
            return None
        try:
            return Payload(parts[1], int(parts[2]), int(parts[3]), parts[4])
        except ValueError:
            return None


# --- invoices -------------------------------------------------------------------------------


class CryptoPayError(Exception):
    """Crypto Pay could not be asked, or said no. The message never holds the token."""


class MalformedInvoice(CryptoPayError):
    pass


@dataclass(frozen=True, slots=True)
class RemoteInvoice:
    """The fields of Crypto Pay's Invoice object the shop relies on."""

    invoice_id: int
    status: str  # active, paid, expired
    currency_type: str  # crypto or fiat
    fiat: str | None
    asset: str | None
    amount: Decimal
    payload: str | None
    pay_url: str | None  # bot_invoice_url (or the mini app's)
    paid_asset: str | None
    paid_amount: str | None
    expiration_date: datetime | None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def parse_invoice(data: object) -> RemoteInvoice:
    if not isinstance(data, Mapping):
        raise MalformedInvoice("an invoice must be an object")
    try:
        invoice_id = data["invoice_id"]
        if not isinstance(invoice_id, int) or isinstance(invoice_id, bool) or invoice_id <= 0:
            raise MalformedInvoice("invoice_id must be a positive integer")
        status = str(data["status"])
        amount = Decimal(str(data["amount"]))
    except (KeyError, InvalidOperation) as exc:
        raise MalformedInvoice(f"invoice without a usable {exc}") from None
    if not amount.is_finite():
        raise MalformedInvoice("amount is not a number")

    def text(key: str, limit: int) -> str | None:
        value = data.get(key)
        return str(value)[:limit] if value is not None else None

    return RemoteInvoice(
        invoice_id=invoice_id,
        status=status,
        currency_type=str(data.get("currency_type") or "crypto"),
        fiat=text("fiat", 8),
        asset=text("asset", 16),
        amount=amount,
        payload=data.get("payload") if isinstance(data.get("payload"), str) else None,
        pay_url=text("bot_invoice_url", 512) or text("mini_app_invoice_url", 512) or text("pay_url", 512),
        paid_asset=text("paid_asset", 16),
        paid_amount=text("paid_amount", 40),
        expiration_date=_time(data.get("expiration_date")),
    )


def to_minor(amount: Decimal, currency: str) -> int | None:
    """Minor units for an exact decimal amount; None if it has more digits than the currency."""
    scaled = amount.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def from_minor(amount: int, currency: str) -> str:
    digits = exponent(currency)
    return str(Decimal(amount).scaleb(-digits).quantize(Decimal(1).scaleb(-digits)))


class CryptoPayClient:
    """``POST {base}/api/{method}`` with a JSON body and the token header."""

    def __init__(
        self, base_url: str, token: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._http = httpx.AsyncClient(timeout=TIMEOUT, transport=transport, follow_redirects=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        url = f"{self.base_url}/api/{method}"
        try:
            response = await self._http.post(
                url, json=dict(params or {}), headers={TOKEN_HEADER: self._token}
            )
        except httpx.HTTPError as exc:
            raise CryptoPayError(f"{method}: {type(exc).__name__}") from None
        try:
            reply = json.loads(response.content)
        except ValueError:
            raise CryptoPayError(f"{method}: HTTP {response.status_code}, not JSON") from None
        if not isinstance(reply, dict):
            raise CryptoPayError(f"{method}: HTTP {response.status_code}, unexpected reply")
        if reply.get("ok") is not True:
            raw = reply.get("error")
            error: dict[str, Any] = raw if isinstance(raw, dict) else {}
            name = str(error.get("name") or "unknown error")[:64]
            raise CryptoPayError(f"{method}: {error.get('code', response.status_code)} {name}")
        return reply.get("result")

    async def get_me(self) -> dict[str, Any]:
        result = await self.call("getMe")
        return result if isinstance(result, dict) else {}

    async def create_invoice(
        self,
        *,
        fiat: str,
        amount: str,
        accepted_assets: Iterable[str],
        payload: str,
        description: str,
        expires_in: int,
    ) -> RemoteInvoice:
        result = await self.call(
            "createInvoice",
            {
                "currency_type": "fiat",
                "fiat": fiat,
                "accepted_assets": ",".join(accepted_assets),
                "amount": amount,
                "payload": payload,
                "description": description[:1024],
                "expires_in": expires_in,
                "allow_comments": False,
            },
        )
        return parse_invoice(result)

    async def get_invoices(self, invoice_ids: Iterable[int]) -> list[RemoteInvoice]:
        ids = [str(i) for i in invoice_ids]
        result = await self.call("getInvoices", {"invoice_ids": ",".join(ids), "count": max(1, len(ids))})
        items = result.get("items") if isinstance(result, dict) else None
        if not isinstance(items, list):
            raise CryptoPayError("getInvoices: no items in the reply")
        out = []
        for item in items:
            try:
                out.append(parse_invoice(item))
            except MalformedInvoice as exc:
                log.warning("getInvoices: skipped an invoice: %s", exc)
        return out
