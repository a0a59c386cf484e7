"""The waiting order's live timer: its message redrawn with the minutes left, and one
"5 min left" reminder.

Redraws go through the outbox as the low-priority kind ``order_redraw`` (the sender gives
them at most a share of its budget, after codes), coalesced per order: while one is still
pending, the next replaces its payload instead of queueing a second edit of the same message.
The next redraw is due when the minutes shown change (aligned to the deadline), so the
screen and the reminder tell the same time. ``orders.redraw_at`` is that schedule; the job
moves it forward in the same transaction that queues the rows, so two schedulers never queue
one redraw twice.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, or_, select, update

from core import outbox
from core.db.engine import insert_ignore
from core.db.tables import orders
from core.db.tables import outbox as outbox_t
from core.order_states import OrderStatus
from core.orders.transitions import outbox_row

if TYPE_CHECKING:
    from core.orders.service import OrderService

REMINDER_S = 300  # the one "5 min left" notice
REMINDER = outbox.ORDER_REMINDER

_SET_REDRAW = (
    update(orders)
    .where(orders.c.id == bindparam("b_id"), orders.c.status == OrderStatus.WAITING)
    .values(redraw_at=bindparam("b_at"))
)


def minutes_left(expires_at: datetime, now: datetime) -> int:
    """Whole minutes left, rounded up: "1 min left" until the very end, and the number
    shown changes exactly at deadline − k minutes, when the redraw is due."""
    return max(0, math.ceil((expires_at - now).total_seconds() / 60))


def next_redraw(expires_at: datetime, now: datetime, every: float) -> datetime:
    """The next moment after ``now`` at a whole number of ``every`` before the deadline."""
    left = (expires_at - now).total_seconds()
    steps = math.ceil(left / every) - 1
    if steps <= 0:
        return expires_at
    return expires_at - timedelta(seconds=steps * every)


async def redraw_due(svc: OrderService, *, limit: int = 1000) -> int:
    """Queue the redraws (and reminders) that are due; returns how many orders were due."""
    now = svc.clock.now()
    every = svc.settings.ORDER_REDRAW_SECONDS
    due = and_(
        orders.c.status == OrderStatus.WAITING,
        orders.c.message_id.is_not(None),
        orders.c.chat_id.is_not(None),
        orders.c.expires_at > now,
        or_(
            orders.c.redraw_at <= now,
            and_(orders.c.redraw_at.is_(None), orders.c.created_at <= now - timedelta(seconds=every)),
        ),
    )
    pick = (
        select(
            orders.c.id,
            orders.c.chat_id,
            orders.c.message_id,
            orders.c.expires_at,
            orders.c.created_at,
            orders.c.service,
            orders.c.country,
            orders.c.phone,
        )
        .where(due)
        .order_by(orders.c.redraw_at)
        .limit(limit)
    )
    if svc.db.is_postgres:
        pick = pick.with_for_update(skip_locked=True)
    async with svc.db.begin() as conn:
        rows = (await conn.execute(pick)).all()
        if not rows:
            return 0
        await conn.execute(
            _SET_REDRAW, [dict(b_id=r.id, b_at=next_redraw(r.expires_at, now, every)) for r in rows]
        )
        await outbox.enqueue_redraws(
            conn,
            [
                dict(
                    order_id=r.id,
                    chat_id=r.chat_id,
                    payload={
                        "order_id": r.id,
                        "message_id": r.message_id,
                        "minutes_left": minutes_left(r.expires_at, now),
                    },
                )
                for r in rows
            ],
            now,
        )
        reminders = [
            outbox_row(
                kind=REMINDER,
                chat_id=r.chat_id,
                order_id=r.id,
                now=now,
                dedupe_key=f"order:{r.id}:reminder",
                payload=_reminder_payload(r, now),
            )
            for r in rows
            if (r.expires_at - now).total_seconds() <= REMINDER_S
            and (r.expires_at - r.created_at).total_seconds() > REMINDER_S
        ]
        if reminders:
            await conn.execute(insert_ignore(conn, outbox_t), reminders)
    return len(rows)


def _reminder_payload(row: Any, now: datetime) -> dict[str, Any]:
    return {
        "order_id": row.id,
        "message_id": row.message_id,
        "service": row.service,
        "country": row.country,
        "phone": row.phone,
        "expires_at": row.expires_at.isoformat(),
        "minutes_left": minutes_left(row.expires_at, now),
    }
