"""The notification outbox: messages to users and staff, written in the transaction that
caused them and sent later by the bot process.

Writing the row with the state change means a crash can never lose a notification or send
one for a change that rolled back. ``dedupe_key`` (e.g. ``order:<id>:completed``) makes a
replayed transition unable to queue the same message twice. Senders claim rows with a lease,
so two bot processes never send the same row; a crashed sender's rows come back after the
lease ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.engine import Database, insert_ignore
from core.db.tables import outbox

PENDING, SENT, FAILED, UNREACHABLE = "pending", "sent", "failed", "unreachable"
MAX_ATTEMPTS = 8

# Kinds that may wait: a waiting order's timer (its redraws and its one "5 min left"
# reminder) and broadcasts. The sender gives them at most a share of its budget and only what
# codes and replies leave over: under load a reminder is late, a code never is.
ORDER_REDRAW = "order_redraw"
ORDER_REMINDER = "order_reminder"
BROADCAST = "broadcast"
LOW_PRIORITY_KINDS = (ORDER_REDRAW, ORDER_REMINDER, BROADCAST)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    kind: str
    chat_id: int
    order_id: str | None
    payload: dict[str, Any]
    attempts: int


async def enqueue(
    conn: AsyncConnection,
    *,
    kind: str,
    chat_id: int,
    payload: dict[str, Any],
    dedupe_key: str,
    now: datetime,
    order_id: str | None = None,
) -> bool:
    result = await conn.execute(
        insert_ignore(conn, outbox),
        dict(
            dedupe_key=dedupe_key,
            kind=kind,
            chat_id=chat_id,
            order_id=order_id,
            payload=payload,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        ),
    )
    return result.rowcount == 1


async def enqueue_redraws(conn: AsyncConnection, rows: list[dict[str, Any]], now: datetime) -> int:
    """Queue a redraw of each order's message, coalesced: an order with a redraw still
    pending gets that row's payload replaced (the newest wins) instead of a second row.
    ``rows`` hold ``order_id``, ``chat_id`` and ``payload``. Returns how many were added."""
    if not rows:
        return 0
    ids = [r["order_id"] for r in rows]
    pending = {
        order_id: row_id
        for row_id, order_id in await conn.execute(
            select(outbox.c.id, outbox.c.order_id).where(
                outbox.c.order_id.in_(ids), outbox.c.kind == ORDER_REDRAW, outbox.c.status == PENDING
            )
        )
    }
    replace = [
        dict(b_id=pending[r["order_id"]], b_payload=r["payload"]) for r in rows if r["order_id"] in pending
    ]
    if replace:
        await conn.execute(
            update(outbox)
            .where(outbox.c.id == bindparam("b_id"), outbox.c.status == PENDING)
            .values(payload=bindparam("b_payload")),
            replace,
        )
    fresh = [
        dict(
            dedupe_key=f"redraw:{r['order_id']}:{now.timestamp():.3f}",
            kind=ORDER_REDRAW,
            chat_id=r["chat_id"],
            order_id=r["order_id"],
            payload=r["payload"],
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for r in rows
        if r["order_id"] not in pending
    ]
    if fresh:
        await conn.execute(insert_ignore(conn, outbox), fresh)
    return len(fresh)


def _claim_statement(postgres: bool, low: bool | None) -> Any:
    now = bindparam("b_now", type_=outbox.c.next_attempt_at.type)
    due = and_(
        outbox.c.status == PENDING,
        outbox.c.next_attempt_at <= now,
        or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < now),
    )
    if low is not None:
        due = and_(
            due,
            outbox.c.kind.in_(LOW_PRIORITY_KINDS) if low else outbox.c.kind.not_in(LOW_PRIORITY_KINDS),
        )
    pick = select(outbox.c.id).where(due).order_by(outbox.c.id).limit(bindparam("b_limit"))
    stmt = update(outbox)
    if postgres:
        # A materialized CTE runs the locking pick once; as ``id IN (subquery)`` PostgreSQL
        # may re-run it per row, skipping rows this statement just locked, and claim more
        # than ``limit`` (same reasoning as core.jobs.claim_orders).
        picked = pick.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
        stmt = stmt.where(outbox.c.id == picked.c.id, due)
    else:
        stmt = stmt.where(outbox.c.id.in_(pick.scalar_subquery()), due)
    return stmt.values(
        lease_owner=bindparam("b_owner", type_=outbox.c.lease_owner.type),
        lease_until=bindparam("b_lease_until", type_=outbox.c.lease_until.type),
        attempts=outbox.c.attempts + 1,
    ).returning(
        outbox.c.id, outbox.c.kind, outbox.c.chat_id, outbox.c.order_id, outbox.c.payload, outbox.c.attempts
    )


# Built once per dialect: every sender polls with it several times a second.
_CLAIM = {(pg, low): _claim_statement(pg, low) for pg in (False, True) for low in (None, False, True)}


async def claim_batch(
    db: Database,
    *,
    owner: str,
    now: datetime,
    limit: int = 50,
    lease_seconds: float = 60,
    low: bool | None = None,
) -> list[OutboxMessage]:
    """Lease up to ``limit`` due rows to ``owner``, oldest first; ``low`` True claims only
    the low-priority kinds, False all others, None any."""
    params = {
        "b_now": now,
        "b_limit": limit,
        "b_owner": owner,
        "b_lease_until": now + timedelta(seconds=lease_seconds),
    }
    written = await db.write_one(_CLAIM[(db.is_postgres, low)], params)
    return sorted((OutboxMessage(*r) for r in written.rows), key=lambda m: m.id)


async def _finish(db: Database, msg_id: int, owner: str, **values: Any) -> bool:
    written = await db.write_one(
        update(outbox)
        .where(outbox.c.id == msg_id, outbox.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None, **values)
    )
    return written.rowcount == 1


async def mark_sent(db: Database, msg_id: int, owner: str, now: datetime) -> bool:
    return await _finish(db, msg_id, owner, status=SENT, sent_at=now, last_error=None)


async def mark_retry(
    db: Database, msg_id: int, owner: str, retry_at: datetime, error: str, *, attempts: int
) -> bool:
    """Try again at ``retry_at``; gives up as ``failed`` after MAX_ATTEMPTS."""
    if attempts >= MAX_ATTEMPTS:
        return await _finish(db, msg_id, owner, status=FAILED, last_error=error[:255])
    return await _finish(db, msg_id, owner, next_attempt_at=retry_at, last_error=error[:255])


async def mark_failed(db: Database, msg_id: int, owner: str, error: str) -> bool:
    return await _finish(db, msg_id, owner, status=FAILED, last_error=error[:255])


async def mark_unreachable(db: Database, msg_id: int, owner: str, error: str) -> bool:
    return await _finish(db, msg_id, owner, status=UNREACHABLE, last_error=error[:255])
