"""TextVerified webhooks: ``v2.sms.received`` delivers a code without waiting for a poll.

Trust comes only from the signature: ``X-Webhook-Signature: HMAC-SHA512=<base64>`` over the
exact raw body with ``TEXTVERIFIED_WEBHOOK_SECRET``, compared in constant time before the body
is even parsed. A bad or missing signature is 401 and changes nothing.

Recording is ``core.webhooks.record_sms``: idempotent by the event id and by the message, with
an audit row committed with the event id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from litestar import Request, post
from litestar.response import Response

from core import webhooks
from core.providers.base import SmsMessage
from core.webhooks import WebhookOutcome

PROVIDER = "textverified"
SIGNATURE_HEADER = "x-webhook-signature"
MAX_BODY = 64 * 1024


def sign(body: bytes, secret: str) -> str:
    """The header value TextVerified sends for ``body`` (used by tests and the sandbox)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha512).digest()
    return "HMAC-SHA512=" + base64.b64encode(digest).decode()


def signature_ok(body: bytes, header: str | None, secret: str) -> bool:
    if not header:
        return False
    scheme, _, value = header.strip().partition("=")
    if scheme.strip().upper() != "HMAC-SHA512" or not value:
        return False
    try:
        given = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha512).digest()
    return hmac.compare_digest(given, expected)


def _json(status: int, detail: str) -> Response[Any]:
    return Response({"status_code": status, "detail": detail}, status_code=status)


def message_id(data: dict[str, Any]) -> str:
    """The webhook carries no SMS id: a digest of what identifies the message stands in."""
    basis = "|".join(str(data.get(key)) for key in ("reservationId", "createdAt", "smsContent", "parsedCode"))
    return "tvwh:" + hashlib.sha256(basis.encode()).hexdigest()[:40]


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


@post("/webhooks/textverified", opt={"public": True, "exclude_from_auth": True}, include_in_schema=False)
async def textverified(request: Request[Any, Any, Any]) -> Response[Any]:
    ctx = request.app.state.admin
    secret = ctx.core.settings.TEXTVERIFIED_WEBHOOK_SECRET
    if not secret:
        return _json(503, "TextVerified webhooks are not configured (TEXTVERIFIED_WEBHOOK_SECRET)")
    body = await request.body()
    if len(body) > MAX_BODY:
        return _json(413, "body too large")
    if not signature_ok(body, request.headers.get(SIGNATURE_HEADER), secret):
        return _json(401, "bad signature")
    try:
        envelope = json.loads(body)
        event_id = str(envelope["id"])[:128]
        event = envelope.get("event")
        data = envelope.get("data") or {}
        if not event_id or not isinstance(data, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return _json(400, "not a TextVerified webhook envelope")
    if event != "v2.sms.received":
        return _json(200, f"ignored event {event!r}")

    reservation = data.get("reservationId")
    code = data.get("parsedCode")
    text = data.get("smsContent")
    msg = SmsMessage(
        message_id=message_id(data),
        code=str(code)[:32] if code else None,
        text=str(text) if text is not None else None,
        received_at=_parse_time(data.get("createdAt")),
    )
    outcome = await webhooks.record_sms(
        ctx.db,
        ctx.core.orders,
        provider=PROVIDER,
        event_id=event_id,
        activation_id=reservation if isinstance(reservation, str) else None,
        message=msg,
        now=ctx.clock.now(),
    )
    return _json(*_ANSWERS[outcome])


# Not recorded as seen when there is no order: if the order's number is still being
# committed, the provider's retry will find it.
_ANSWERS = {
    WebhookOutcome.DUPLICATE: (200, "duplicate delivery; already recorded"),
    WebhookOutcome.NO_ORDER: (404, "no order for this reservation"),
    WebhookOutcome.ALREADY_POLLED: (200, "already recorded by polling"),
    WebhookOutcome.RECORDED: (200, "recorded"),
}


# --- Crypto Pay (@CryptoBot) ------------------------------------------------------------------
CRYPTOPAY_MAX_BODY = 64 * 1024


@post("/webhooks/cryptopay", opt={"public": True, "exclude_from_auth": True}, include_in_schema=False)
async def cryptopay(request: Request[Any, Any, Any]) -> Response[Any]:
    """Crypto Pay's ``invoice_paid`` delivery. The raw body and its signature go to core
    untouched (``CryptoPay.handle_webhook`` checks the signature before parsing anything and
    explains which answer each delivery gets, for Crypto Pay's retry rules)."""
    service = request.app.state.admin.core.cryptopay
    if service is None:
        return _json(503, "Crypto Pay is not configured (CRYPTOPAY_TOKEN)")
    body = await request.body()
    if len(body) > CRYPTOPAY_MAX_BODY:
        return _json(413, "body too large")
    answer = await service.handle_webhook(body, request.headers.get("crypto-pay-api-signature"))
    return _json(answer.status, answer.detail)
