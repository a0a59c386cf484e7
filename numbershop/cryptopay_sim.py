"""A simulated Crypto Pay server (@CryptoBot) inside the sandbox: pay a crypto invoice with one
click, with or without the webhook.

Served on the sandbox's own origin under ``/cryptopay``:

    POST|GET /cryptopay/api/{method}           getMe, createInvoice, getInvoices, deleteInvoice
    GET      /cryptopay/invoice/{hash}         the invoice page (the pay link the bot shows)
    POST     /cryptopay/invoice/{hash}/pay     pay it: ``webhook=deliver`` (default) or ``drop``

Written from ``reference/crypto-pay-api.md``, like the tests' fake: the token header on every
call, ``{"ok", "result"|"error"}`` replies, fiat invoices with accepted assets, decimal
strings, and the ``invoice_paid`` webhook signed as Crypto Pay signs it (hex HMAC-SHA-256 of
the raw body keyed with the SHA-256 digest of the token), POSTed to the dashboard. "Drop"
pays without a webhook, so the scheduler's poll is what credits the buyer. Play money only:
the token is the sandbox's own and the server answers loopback guards like the emulator.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import itertools
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
from aiohttp import web

from core.clock import Clock

log = logging.getLogger("numbershop.cryptopay_sim")

SANDBOX_CRYPTOPAY_TOKEN = "8088:sandbox-cryptopay-app"
PREFIX = "/cryptopay"


def _iso(clock: Clock, delta: float = 0) -> str:
    return (clock.now() + timedelta(seconds=delta)).isoformat().replace("+00:00", "Z")


@dataclass
class Delivery:
    invoice_id: int
    status: int | None  # the dashboard's answer; None: not delivered (dropped or unreachable)
    detail: str


class CryptoPaySim:
    def __init__(self, clock: Clock, base_url: str, *, token: str = SANDBOX_CRYPTOPAY_TOKEN) -> None:
        self.clock = clock
        self.base_url = base_url.rstrip("/")  # where the pages are: the sandbox's address
        self.token = token
        self.webhook_url: str | None = None  # set once the dashboard's address is known
        self.invoices: dict[int, dict[str, Any]] = {}
        self.deliveries: list[Delivery] = []
        self._ids = itertools.count(1)
        self._updates = itertools.count(1)

    # ------------------------------------------------------------------ the API
    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", PREFIX + "/api/{method}", self.api)
        app.router.add_get(PREFIX + "/invoice/{hash}", self.invoice_page)
        app.router.add_post(PREFIX + "/invoice/{hash}/pay", self.pay_action)

    @staticmethod
    def _reply(ok: bool, result: Any = None, *, code: int = 400, name: str = "") -> web.Response:
        if ok:
            return web.json_response({"ok": True, "result": result})
        return web.json_response({"ok": False, "error": {"code": code, "name": name}}, status=code)

    async def api(self, request: web.Request) -> web.Response:
        if request.headers.get("Crypto-Pay-API-Token") != self.token:
            return self._reply(False, code=401, name="UNAUTHORIZED")
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            try:
                body = json.loads(await request.text() or "{}")
            except ValueError:
                return self._reply(False, name="INVALID_JSON")
            if isinstance(body, dict):
                params.update(body)
        method = request.match_info["method"]
        if method == "getMe":
            return self._reply(
                True,
                {"app_id": 1, "name": "numbershop sandbox", "payment_processing_bot_username": "CryptoBot"},
            )
        if method == "createInvoice":
            return self._create(params)
        if method == "getInvoices":
            ids = {int(i) for i in str(params.get("invoice_ids") or "").split(",") if i.strip().isdigit()}
            items = [i for i in self.invoices.values() if not ids or i["invoice_id"] in ids]
            return self._reply(True, {"items": items[: int(params.get("count", 100))]})
        if method == "deleteInvoice":
            found = self.invoices.pop(int(params.get("invoice_id") or 0), None)
            return self._reply(found is not None, True, name="INVOICE_NOT_FOUND")
        return self._reply(False, code=405, name="METHOD_NOT_FOUND")

    def _create(self, params: dict[str, Any]) -> web.Response:
        try:
            amount = Decimal(str(params.get("amount")))
        except InvalidOperation:
            return self._reply(False, name="AMOUNT_INVALID")
        if not amount.is_finite() or amount <= 0:
            return self._reply(False, name="AMOUNT_INVALID")
        if params.get("currency_type") != "fiat" or not params.get("fiat"):
            return self._reply(False, name="CURRENCY_TYPE_INVALID")  # the shop only asks fiat
        invoice_id = next(self._ids)
        token = secrets.token_hex(8)
        expires_in = int(params.get("expires_in") or 3600)
        url = f"{self.base_url}{PREFIX}/invoice/{token}"
        self.invoices[invoice_id] = {
            "invoice_id": invoice_id,
            "hash": token,
            "status": "active",
            "currency_type": "fiat",
            "fiat": str(params["fiat"]),
            "amount": str(params["amount"]),
            "accepted_assets": [a for a in str(params.get("accepted_assets") or "USDT").split(",") if a],
            "description": params.get("description"),
            "payload": params.get("payload"),
            "bot_invoice_url": url,
            "mini_app_invoice_url": url,
            "web_app_invoice_url": url,
            "created_at": _iso(self.clock),
            "expiration_date": _iso(self.clock, expires_in),
            "allow_comments": False,
            "allow_anonymous": True,
        }
        return self._reply(True, self.invoices[invoice_id])

    # ------------------------------------------------------------------ the payer
    def _by_hash(self, token: str) -> dict[str, Any] | None:
        return next((i for i in self.invoices.values() if i["hash"] == token), None)

    async def pay(self, invoice_id: int, *, asset: str | None = None, webhook: bool = True) -> Delivery:
        """Pay the invoice in full; deliver the signed webhook unless told to drop it."""
        invoice = self.invoices[invoice_id]
        if invoice["status"] != "active":
            return Delivery(invoice_id, None, f"invoice is {invoice['status']}")
        paid_asset = asset if asset in invoice["accepted_assets"] else invoice["accepted_assets"][0]
        invoice.update(
            status="paid",
            paid_asset=paid_asset,
            paid_amount=invoice["amount"],
            paid_fiat_rate="1",
            fee_asset=paid_asset,
            fee_amount="0",
            paid_at=_iso(self.clock),
            paid_anonymously=False,
        )
        if not webhook:
            delivery = Delivery(invoice_id, None, "webhook dropped: the shop's poll will find the payment")
        elif self.webhook_url is None:
            delivery = Delivery(invoice_id, None, "no dashboard to deliver to: the shop's poll will find it")
        else:
            delivery = await self._deliver(invoice)
        self.deliveries.append(delivery)
        return delivery

    def webhook_body(self, invoice: dict[str, Any]) -> bytes:
        envelope = {
            "update_id": next(self._updates),
            "update_type": "invoice_paid",
            "request_date": _iso(self.clock),
            "payload": invoice,
        }
        return json.dumps(envelope).encode()

    def signature(self, body: bytes) -> str:
        return hmac.new(hashlib.sha256(self.token.encode()).digest(), body, hashlib.sha256).hexdigest()

    async def _deliver(self, invoice: dict[str, Any]) -> Delivery:
        assert self.webhook_url is not None
        body = self.webhook_body(invoice)
        headers = {"Content-Type": "application/json", "crypto-pay-api-signature": self.signature(body)}
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
                session.post(self.webhook_url, data=body, headers=headers) as response,
            ):
                text = await response.text()
                return Delivery(invoice["invoice_id"], response.status, text[:200])
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("crypto webhook not delivered: %s", exc)
            return Delivery(
                invoice["invoice_id"], None, f"not delivered ({type(exc).__name__}): the poll will find it"
            )

    # ------------------------------------------------------------------ pages
    async def invoice_page(self, request: web.Request) -> web.Response:
        invoice = self._by_hash(request.match_info["hash"])
        if invoice is None:
            return web.Response(status=404, text="No such invoice.")
        return web.Response(
            text=_page(invoice), content_type="text/html", headers={"Cache-Control": "no-store"}
        )

    async def pay_action(self, request: web.Request) -> web.Response:
        invoice = self._by_hash(request.match_info["hash"])
        if invoice is None:
            return web.Response(status=404, text="No such invoice.")
        form = await request.post()
        webhook = form.get("webhook", "deliver") != "drop"
        asset = str(form.get("asset") or "") or None
        delivery = await self.pay(invoice["invoice_id"], asset=asset, webhook=webhook)
        return web.Response(
            text=_page(invoice, delivery), content_type="text/html", headers={"Cache-Control": "no-store"}
        )


_STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0;background:#eef2f6;color:#17212b}
main{max-width:420px;margin:0 auto;padding:20px 16px}
.card{background:#fff;border-radius:14px;padding:18px;box-shadow:0 1px 3px #0002}
h1{font-size:20px;margin:0 0 4px}.amount{font-size:32px;font-weight:700;margin:10px 0}
.muted{color:#6b7785;font-size:14px}.row{display:flex;gap:8px;flex-wrap:wrap;margin:14px 0 0}
button{flex:1 1 100%;font:inherit;padding:12px;border:0;border-radius:10px;background:#2481cc;color:#fff}
button.alt{background:#fff;color:#2481cc;border:1px solid #2481cc}
select{font:inherit;padding:8px;border-radius:8px;width:100%}
.ok{background:#e7f7ec;border-radius:10px;padding:10px;margin-top:14px}
.warn{background:#fff4e0;border-radius:10px;padding:10px;margin-top:14px}
"""


def _page(invoice: dict[str, Any], delivery: Delivery | None = None) -> str:
    esc = html.escape
    amount = f"{esc(invoice['amount'])} {esc(invoice['fiat'])}"
    status = invoice["status"]
    options = "".join(f'<option value="{esc(a)}">{esc(a)}</option>' for a in invoice["accepted_assets"])
    if status == "active":
        action = f"""
<form method="post" action="{PREFIX}/invoice/{esc(invoice["hash"])}/pay">
  <label class="muted">Pay with <select name="asset">{options}</select></label>
  <div class="row">
    <button type="submit" name="webhook" value="deliver">Pay {amount}</button>
    <button class="alt" type="submit" name="webhook" value="drop">Pay, but lose the webhook</button>
  </div>
</form>"""
    else:
        paid = f" with {esc(invoice.get('paid_amount') or '')} {esc(invoice.get('paid_asset') or '')}"
        action = f'<p class="ok">Invoice {esc(status)}{paid if status == "paid" else ""}.</p>'
    note = ""
    if delivery is not None:
        if delivery.status is not None:
            note = f'<p class="ok">Webhook delivered: HTTP {delivery.status}. Go back to the chat.</p>'
        else:
            note = f'<p class="warn">{esc(delivery.detail)} (within 30 seconds). Go back to the chat.</p>'
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>Crypto Pay (sandbox)</title>
<style>{_STYLE}</style></head><body><main><div class="card">
<h1>Crypto Pay · sandbox</h1>
<p class="muted">Simulated @CryptoBot invoice #{invoice["invoice_id"]}: play money only.</p>
<div class="amount">{amount}</div><p>{esc(str(invoice.get("description") or ""))}</p>
{action}{note}
</div></main></body></html>"""
