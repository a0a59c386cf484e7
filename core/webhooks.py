"""Provider webhooks: an SMS pushed by the provider, recorded once.

Idempotent twice over: a delivery whose event id is in ``webhook_events`` is skipped, and the
message itself goes through ``OrderService.record_messages``, which stores each message once
per order — so a crash between recording the message and remembering the event id, followed
by the provider's retry, still captures at most once. The event id and its audit row commit
together; the adapter (``admin.webhooks``) only checks the signature and parses the body.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import select

from core import audit
from core.db.engine import insert_ignore
from core.db.tables import order_messages, orders, webhook_events

if TYPE_CHECKING:
    from core.db.engine import Database
    from core.orders import OrderService
    from core.providers.base import SmsMessage


class WebhookOutcome(StrEnum):
    DUPLICATE = "duplicate"  # this event id was recorded before
    NO_ORDER = "no_order"  # no order rents that activation (yet): not remembered, so a retry may
    ALREADY_POLLED = "already_polled"  # the poller recorded the same SMS first
    RECORDED = "recorded"


async def record_sms(
    db: Database,
    orders_service: OrderService,
    *,
    provider: str,
    event_id: str,
    activation_id: str | None,
    message: SmsMessage,
    now: datetime,
) -> WebhookOutcome:
    """Record the SMS of webhook delivery ``event_id`` for the order renting ``activation_id``."""
    async with db.read() as conn:
        seen = await conn.scalar(select(webhook_events.c.id).where(webhook_events.c.id == event_id))
        if seen is not None:
            return WebhookOutcome.DUPLICATE
        order_id = None
        if activation_id:
            order_id = await conn.scalar(
                select(orders.c.id).where(
                    orders.c.provider == provider, orders.c.activation_id == activation_id[:64]
                )
            )
        if order_id is None:
            return WebhookOutcome.NO_ORDER
        # The poller records the same SMS under the provider's message id, which a webhook
        # may not carry: one already recorded with the same code and text is this one.
        polled = await conn.scalar(
            select(order_messages.c.id)
            .where(
                order_messages.c.order_id == order_id,
                order_messages.c.code == message.code,
                order_messages.c.text == message.text,
            )
            .limit(1)
        )
    actor = f"webhook:{provider}"
    if polled is None:
        await orders_service.record_messages(order_id, [message], actor=actor)
    outcome = WebhookOutcome.RECORDED if polled is None else WebhookOutcome.ALREADY_POLLED
    await remember_event(
        db, provider=provider, event_id=event_id, order_id=order_id, outcome=outcome, now=now
    )
    return outcome


async def remember_event(
    db: Database, *, provider: str, event_id: str, order_id: str, outcome: WebhookOutcome, now: datetime
) -> bool:
    """Mark ``event_id`` handled, with its audit row; False if it already was."""
    async with db.begin() as conn:
        fresh = (
            await conn.execute(
                insert_ignore(conn, webhook_events).values(id=event_id, provider=provider, received_at=now)
            )
        ).rowcount == 1
        if fresh:
            await audit.record(
                conn,
                actor=f"webhook:{provider}",
                action="webhook.sms",
                target_type="order",
                target_id=order_id,
                now=now,
                detail={"event_id": event_id, "outcome": str(outcome)},
            )
    return fresh
