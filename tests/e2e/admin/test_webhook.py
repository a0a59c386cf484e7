"""TextVerified's v2.sms.received webhook: signed, recorded through core, idempotent."""

from __future__ import annotations

import json

from sqlalchemy import select

from admin.webhooks import sign
from core.db.tables import order_messages, orders, transfers, webhook_events

from .conftest import WEBHOOK_SECRET, balance, buy, count


def envelope(reservation: str, *, event_id: str = "evt-1", code: str = "424242") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "event": "v2.sms.received",
            "occurredAt": "2026-01-01T12:00:05Z",
            "attempt": 1,
            "idempotencyKey": f"idem-{event_id}",
            "data": {
                "from": "12345",
                "to": "+15550001",
                "createdAt": "2026-01-01T12:00:04Z",
                "smsContent": f"Your code is {code}",
                "parsedCode": code,
                "encrypted": False,
                "reservationId": reservation,
            },
        }
    ).encode()


async def _post(client, body: bytes, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Webhook-Signature"] = signature
    return await client.post("/webhooks/textverified", content=body, headers=headers)


async def _status(db, order_id: str) -> str:
    async with db.read() as conn:
        return await conn.scalar(select(orders.c.status).where(orders.c.id == order_id))


async def test_signed_code_completes_the_order_once(client, shop, db) -> None:
    order = await buy(shop, 321, funds=1000, price=200, via="textverified")
    assert order.provider == "textverified" and order.status == "waiting"
    body = envelope(order.activation_id)
    r = await _post(client, body, sign(body, WEBHOOK_SECRET))
    assert r.status_code == 200, r.text
    assert await _status(db, order.id) == "completed"
    wallet = await balance(db, 321)
    assert (wallet.balance, wallet.held) == (800, 0)
    async with db.read() as conn:
        assert await conn.scalar(select(orders.c.code).where(orders.c.id == order.id)) == "424242"
    # Replayed delivery: acknowledged, nothing recorded twice.
    r = await _post(client, body, sign(body, WEBHOOK_SECRET))
    assert r.status_code == 200 and "duplicate" in r.text
    assert await count(db, order_messages) == 1
    assert await count(db, webhook_events) == 1
    assert await count(db, transfers, transfers.c.code == "capture") == 1


async def test_same_message_under_a_new_event_id_is_not_recorded_twice(client, shop, db) -> None:
    order = await buy(shop, 322, funds=1000, via="textverified")
    for event_id in ("evt-a", "evt-b"):
        body = envelope(order.activation_id, event_id=event_id)
        assert (await _post(client, body, sign(body, WEBHOOK_SECRET))).status_code == 200
    assert await count(db, order_messages) == 1
    assert await count(db, transfers, transfers.c.code == "capture") == 1


async def test_bad_or_missing_signature_is_401_and_changes_nothing(client, shop, db) -> None:
    order = await buy(shop, 323, funds=1000, via="textverified")
    body = envelope(order.activation_id)
    for signature in [
        None,
        "",
        sign(body, "wrong-secret"),
        "HMAC-SHA256=" + sign(body, WEBHOOK_SECRET).split("=", 1)[1],
        "HMAC-SHA512=not base64!!",
        sign(body + b" ", WEBHOOK_SECRET),
    ]:
        r = await _post(client, body, signature)
        assert r.status_code == 401, signature
    assert await _status(db, order.id) == "waiting"
    assert await count(db, order_messages) == 0 and await count(db, webhook_events) == 0


async def test_unknown_reservation_and_other_events(client, shop, db) -> None:
    body = envelope("no-such-reservation")
    r = await _post(client, body, sign(body, WEBHOOK_SECRET))
    assert r.status_code == 404
    assert await count(db, webhook_events) == 0  # not remembered: a retry may find the order later
    other = json.dumps({"id": "e9", "event": "v2.rental.billingcycle.renewed", "data": {}}).encode()
    assert (await _post(client, other, sign(other, WEBHOOK_SECRET))).status_code == 200
    junk = b"not json"
    assert (await _post(client, junk, sign(junk, WEBHOOK_SECRET))).status_code == 400


async def test_a_code_for_an_alpha_order_with_the_same_id_is_not_taken(client, shop, db) -> None:
    order = await buy(shop, 324, funds=1000)  # rented from 'alpha', not TextVerified
    body = envelope(order.activation_id)
    assert (await _post(client, body, sign(body, WEBHOOK_SECRET))).status_code == 404
    assert await _status(db, order.id) == "waiting"


async def test_a_code_already_polled_is_not_recorded_again(client, shop, db) -> None:
    order = await buy(shop, 325, funds=1000, via="textverified")
    provider = shop.providers["textverified"]
    provider.deliver(order.activation_id, "424242", "Your code is 424242")
    await shop.orders.check_now(order.id)  # the poller got it first, under the provider's id
    assert await _status(db, order.id) == "completed"
    body = envelope(order.activation_id)
    r = await _post(client, body, sign(body, WEBHOOK_SECRET))
    assert r.status_code == 200 and "polling" in r.text
    assert await count(db, order_messages) == 1
