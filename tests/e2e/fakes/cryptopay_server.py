"""A fake Crypto Pay API (@CryptoBot), written from ``reference/crypto-pay-api.md``.

``{base}/api/{method}`` over GET (query) or POST (JSON body), the ``Crypto-Pay-API-Token``
header on every call, replies ``{"ok": true, "result": …}`` or
``{"ok": false, "error": {"code", "name"}}``, list methods wrapped in ``{"items": [...]}``,
amounts as decimal strings, timestamps ISO-8601. ``pay`` plays the payer; ``webhook_body``
and ``signature`` build the ``invoice_paid`` delivery exactly as documented: the hex
HMAC-SHA-256 of the raw body keyed with the raw SHA-256 digest of the token.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from core.clock import Clock

from .base import FakeServer

FIATS = {"USD", "EUR", "RUB", "BYN", "UAH", "GBP", "CNY", "KZT", "UZS", "GEL", "TRY", "AMD", "THB", "INR"}
ASSETS = {"USDT", "TON", "BTC", "ETH", "LTC", "BNB", "TRX", "USDC"}


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


class FakeCryptoPay(FakeServer):
    def __init__(self, clock: Clock, *, token: str = "12345:AAfakeCryptoPayToken") -> None:
        super().__init__()
        self.clock = clock
        self.token = token
        self.invoices: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1001)
        self._updates = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._api)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            try:
                body = json.loads(await request.text() or "{}")
            except ValueError:
                return self._error(400, "INVALID_JSON")
            if isinstance(body, dict):
                params.update(body)
        return await self.dispatch(method, request, lambda r: self._call(method, r, params), params)

    async def _call(self, method: str, request: web.Request, params: dict[str, Any]) -> web.StreamResponse:
        if request.headers.get("Crypto-Pay-API-Token") != self.token:
            return self._error(401, "UNAUTHORIZED")
        handler = getattr(self, "m_" + method, None)
        if handler is None:
            return self._error(405, "METHOD_NOT_FOUND")
        return await handler(params)

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _error(code: int, name: str) -> web.Response:
        return web.json_response({"ok": False, "error": {"code": code, "name": name}}, status=code)

    # --- methods
    async def m_getMe(self, params: dict[str, Any]) -> web.Response:
        return self._ok(
            {"app_id": 7, "name": "numbershop test", "payment_processing_bot_username": "CryptoTestnetBot"}
        )

    async def m_createInvoice(self, params: dict[str, Any]) -> web.Response:
        currency_type = params.get("currency_type", "crypto")
        try:
            amount = Decimal(str(params["amount"]))
        except (KeyError, InvalidOperation):
            return self._error(400, "AMOUNT_INVALID")
        if amount <= 0:
            return self._error(400, "AMOUNT_TOO_SMALL")
        invoice: dict[str, Any] = {"currency_type": currency_type, "amount": str(params["amount"])}
        if currency_type == "fiat":
            if params.get("fiat") not in FIATS:
                return self._error(400, "FIAT_INVALID")
            invoice["fiat"] = params["fiat"]
            accepted = [a for a in str(params.get("accepted_assets") or "").split(",") if a]
            if any(a not in ASSETS for a in accepted):
                return self._error(400, "ACCEPTED_ASSETS_INVALID")
            invoice["accepted_assets"] = accepted or sorted(ASSETS)
        elif currency_type == "crypto":
            if params.get("asset") not in ASSETS:
                return self._error(400, "ASSET_INVALID")
            invoice["asset"] = params["asset"]
        else:
            return self._error(400, "CURRENCY_TYPE_INVALID")
        payload = params.get("payload")
        if payload is not None and len(str(payload).encode()) > 4096:
            return self._error(400, "PAYLOAD_TOO_LONG")
        expires_in = params.get("expires_in")
        if expires_in is not None and not 1 <= int(expires_in) <= 2_678_400:
            return self._error(400, "EXPIRES_IN_INVALID")
        invoice_id = next(self._ids)
        token = secrets.token_hex(6)
        now = self.clock.now()
        invoice.update(
            invoice_id=invoice_id,
            hash=token,
            status="active",
            description=params.get("description"),
            payload=payload,
            bot_invoice_url=f"https://t.me/CryptoTestnetBot?start={token}",
            mini_app_invoice_url=f"https://t.me/CryptoTestnetBot/app?startapp=invoice-{token}",
            web_app_invoice_url=f"https://testnet-app.send.tg/invoices/{token}",
            pay_url=f"https://t.me/CryptoTestnetBot?start={token}",
            allow_comments=bool(params.get("allow_comments", True)),
            allow_anonymous=bool(params.get("allow_anonymous", True)),
            created_at=_iso(now),
        )
        if expires_in is not None:
            invoice["expiration_date"] = _iso(now + timedelta(seconds=int(expires_in)))
        self.invoices[invoice_id] = invoice
        return self._ok(invoice)

    async def m_getInvoices(self, params: dict[str, Any]) -> web.Response:
        items = list(self.invoices.values())
        ids = params.get("invoice_ids")
        if ids:
            wanted = {int(i) for i in str(ids).split(",") if i.strip()}
            items = [i for i in items if i["invoice_id"] in wanted]
        if params.get("status"):
            items = [i for i in items if i["status"] == params["status"]]
        offset, count = int(params.get("offset", 0)), int(params.get("count", 100))
        if not 1 <= count <= 1000:
            return self._error(400, "COUNT_INVALID")
        return self._ok({"items": items[offset : offset + count]})

    async def m_deleteInvoice(self, params: dict[str, Any]) -> web.Response:
        if self.invoices.pop(int(params.get("invoice_id", 0)), None) is None:
            return self._error(400, "INVOICE_NOT_FOUND")
        return self._ok(True)

    # --- the payer and the webhook
    def pay(self, invoice_id: int, *, asset: str = "USDT") -> dict[str, Any]:
        invoice = self.invoices[invoice_id]
        assert invoice["status"] == "active", invoice["status"]
        invoice.update(
            status="paid",
            paid_asset=asset,
            paid_amount=invoice["amount"],
            paid_fiat_rate="1.00",
            paid_usd_rate="1.00",
            fee_asset=asset,
            fee_amount="0.03",
            paid_at=_iso(self.clock.now()),
            paid_anonymously=False,
        )
        return invoice

    def expire(self, invoice_id: int) -> None:
        self.invoices[invoice_id]["status"] = "expired"

    def webhook_body(self, invoice: dict[str, Any]) -> bytes:
        envelope = {
            "update_id": next(self._updates),
            "update_type": "invoice_paid",
            "request_date": _iso(self.clock.now()),
            "payload": invoice,
        }
        return json.dumps(envelope, indent=1).encode()  # formatting differs from a re-dump

    def signature(self, body: bytes, token: str | None = None) -> str:
        key = hashlib.sha256((token or self.token).encode()).digest()
        return hmac.new(key, body, hashlib.sha256).hexdigest()
