"""Broadcasts: one message from staff to many users, sent through the outbox at a safe rate.

* **Once per form.** A broadcast is created under its form's nonce (unique), so a double
  click or a resubmitted page finds the broadcast it already made instead of sending again.
* **In batches, at the rate.** Nothing is queued at creation. The broadcasts ticker queues
  the next users (in ``users.id`` order, from the broadcast's cursor) a batch at a time, at
  most ``per_second × interval`` per run and only while fewer than that are still waiting,
  so the outbox never holds more than a few seconds of a broadcast. The sender treats kind
  ``broadcast`` as low priority: codes and replies always go first.
* **Each user once.** Outbox rows are keyed ``broadcast:<id>:<user id>``: re-queuing after a
  pause can never message anyone twice.
* **Pause and cancel** stop the queuing and take back the rows still waiting (not those a
  sender is holding, which go out). Pause moves the cursor back to the first row taken
  back; resume continues from there.
* **Progress** is counted from the broadcast's outbox rows: sent, failed, unreachable
  (blocked the bot: the sender marks the user unreachable, and later broadcasts skip them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from core import audit, outbox
from core.db.engine import Database, insert_ignore
from core.db.tables import broadcasts, orders, services, users
from core.db.tables import outbox as outbox_table
from core.errors import InvalidInput, NotFound

KIND = "broadcast"
AUDIENCES = ("everyone", "active", "service", "language")
ACTIVE_DAYS = 30
MAX_TEXT = 4096  # Telegram's limit for one message
# A fifth of the sender's default 25 calls a second: the low-priority share of its budget.
PER_SECOND = 5.0
SENDING, PAUSED, CANCELLED, DONE = "sending", "paused", "cancelled", "done"
BOUGHT_STATUSES = ("completed", "refunded")


@dataclass(frozen=True, slots=True)
class Broadcast:
    id: int
    text: str
    audience: str
    audience_value: str | None
    status: str
    cursor_user_id: int
    total: int
    enqueued: int
    created_by: str
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class Progress:
    total: int
    queued: int  # waiting in the outbox
    sent: int
    failed: int
    unreachable: int

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.unreachable


def _from_row(row: Any) -> Broadcast:
    return Broadcast(
        id=row.id,
        text=row.text,
        audience=row.audience,
        audience_value=row.audience_value,
        status=row.status,
        cursor_user_id=row.cursor_user_id,
        total=row.total,
        enqueued=row.enqueued,
        created_by=row.created_by,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def check_audience(audience: str, value: str | None) -> str | None:
    """The audience's value, normalised; InvalidInput for an audience that cannot be sent to."""
    if audience not in AUDIENCES:
        raise InvalidInput(f"choose an audience: {', '.join(AUDIENCES)}")
    value = (value or "").strip() or None
    if audience == "service":
        if not value:
            raise InvalidInput("choose the service the users bought")
        return value.lower()
    if audience == "language":
        if not value or len(value) > 8:
            raise InvalidInput("choose a language")
        return value.lower()
    return None


def audience_where(audience: str, value: str | None, now: datetime) -> list[ColumnElement[bool]]:
    """Conditions on ``users`` selecting the audience; blocked and unreachable users never."""
    where: list[ColumnElement[bool]] = [users.c.blocked.is_(False), users.c.unreachable.is_(False)]
    if audience == "active":
        since = now - timedelta(days=ACTIVE_DAYS)
        where.append(exists().where(orders.c.user_id == users.c.id, orders.c.created_at >= since))
    elif audience == "service":
        where.append(
            exists().where(
                orders.c.user_id == users.c.id,
                orders.c.service == value,
                orders.c.status.in_(BOUGHT_STATUSES),
            )
        )
    elif audience == "language":
        where.append(users.c.language == value)
    return where


async def audience_size(conn: AsyncConnection, audience: str, value: str | None, now: datetime) -> int:
    value = check_audience(audience, value)
    where = audience_where(audience, value, now)
    return int(await conn.scalar(select(func.count()).select_from(users).where(*where)) or 0)


def check_text(text: str) -> str:
    """Length and emptiness; Telegram's HTML rules are checked by the caller that has a parser."""
    text = (text or "").strip()
    if not text:
        raise InvalidInput("write the message")
    if len(text.encode("utf-16-le")) // 2 > MAX_TEXT:
        raise InvalidInput(f"the message is longer than Telegram's {MAX_TEXT} characters")
    return text


async def create(
    db: Database,
    *,
    nonce: str,
    text: str,
    audience: str,
    audience_value: str | None,
    actor: str,
    now: datetime,
) -> tuple[Broadcast, bool]:
    """Start a broadcast; ``(broadcast, False)`` when this nonce already made one."""
    text = check_text(text)
    value = check_audience(audience, audience_value)
    async with db.begin() as conn:
        if (
            audience == "service"
            and (await conn.scalar(select(services.c.code).where(services.c.code == value))) is None
        ):
            raise InvalidInput(f"unknown service {value!r}")
        total = await audience_size(conn, audience, value, now)
        inserted = await conn.execute(
            insert_ignore(conn, broadcasts).values(
                nonce=nonce,
                text=text,
                audience=audience,
                audience_value=value,
                status=SENDING,
                cursor_user_id=0,
                total=total,
                enqueued=0,
                created_by=actor,
                created_at=now,
                updated_at=now,
            )
        )
        row = (await conn.execute(select(broadcasts).where(broadcasts.c.nonce == nonce))).one()
        created = inserted.rowcount == 1
        if created:
            await audit.record(
                conn,
                actor=actor,
                action="broadcast.create",
                target_type="broadcast",
                target_id=row.id,
                reason=None,
                detail={"audience": audience, "value": value, "total": total},
                now=now,
            )
    return _from_row(row), created


async def get(conn: AsyncConnection, broadcast_id: int) -> Broadcast:
    row = (await conn.execute(select(broadcasts).where(broadcasts.c.id == broadcast_id))).first()
    if row is None:
        raise NotFound(f"no broadcast {broadcast_id}")
    return _from_row(row)


async def recent(conn: AsyncConnection, limit: int = 20) -> list[Broadcast]:
    rows = await conn.execute(select(broadcasts).order_by(broadcasts.c.id.desc()).limit(limit))
    return [_from_row(r) for r in rows]


async def text_for(db: Database, broadcast_id: int) -> str | None:
    """What the sender sends for a broadcast row; None once the broadcast was cancelled."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(broadcasts.c.text, broadcasts.c.status).where(broadcasts.c.id == broadcast_id)
            )
        ).first()
    if row is None or row.status == CANCELLED:
        return None
    return str(row.text)


def _dedupe_key(broadcast_id: int, user_id: int) -> str:
    return f"{KIND}:{broadcast_id}:{user_id}"


def _rows_of(broadcast_id: int) -> ColumnElement[bool]:
    # A range on the unique dedupe_key index (';' sorts right after ':').
    return and_(
        outbox_table.c.dedupe_key >= f"{KIND}:{broadcast_id}:",
        outbox_table.c.dedupe_key < f"{KIND}:{broadcast_id};",
    )


def _waiting(broadcast_id: int, now: datetime) -> ColumnElement[bool]:
    """Rows still waiting and not held by a sender: the ones pause and cancel take back."""
    return and_(
        _rows_of(broadcast_id),
        outbox_table.c.status == outbox.PENDING,
        or_(outbox_table.c.lease_until.is_(None), outbox_table.c.lease_until < now),
    )


async def progress(conn: AsyncConnection, b: Broadcast) -> Progress:
    counts = {
        status: int(n)
        for status, n in await conn.execute(
            select(outbox_table.c.status, func.count()).where(_rows_of(b.id)).group_by(outbox_table.c.status)
        )
    }
    return Progress(
        total=b.total,
        queued=counts.get(outbox.PENDING, 0),
        sent=counts.get(outbox.SENT, 0),
        failed=counts.get(outbox.FAILED, 0),
        unreachable=counts.get(outbox.UNREACHABLE, 0),
    )


async def _take_back(conn: AsyncConnection, broadcast_id: int, now: datetime) -> list[int]:
    """Delete the waiting rows; the user ids they were for."""
    keys = [
        r[0]
        for r in await conn.execute(
            select(outbox_table.c.dedupe_key).where(_waiting(broadcast_id, now)).with_for_update()
        )
    ]
    if keys:
        await conn.execute(delete(outbox_table).where(outbox_table.c.dedupe_key.in_(keys)))
    return [int(k.rsplit(":", 1)[1]) for k in keys]


async def change(db: Database, broadcast_id: int, action: str, *, actor: str, now: datetime) -> Broadcast:
    """Pause, resume or cancel, audited; OrderStateConflict when the broadcast cannot."""
    allowed = {"pause": (SENDING,), "resume": (PAUSED,), "cancel": (SENDING, PAUSED)}
    if action not in allowed:
        raise InvalidInput("choose pause, resume or cancel")
    async with db.begin() as conn:
        row = (
            await conn.execute(select(broadcasts).where(broadcasts.c.id == broadcast_id).with_for_update())
        ).first()
        if row is None:
            raise NotFound(f"no broadcast {broadcast_id}")
        b = _from_row(row)
        values: dict[str, Any] = {"updated_at": now}
        if action == "resume":
            values["status"] = SENDING
        elif b.status in allowed[action]:
            taken = await _take_back(conn, broadcast_id, now)
            values["enqueued"] = b.enqueued - len(taken)
            if action == "pause":
                values["status"] = PAUSED
                if taken:
                    values["cursor_user_id"] = min(b.cursor_user_id, min(taken) - 1)
            else:
                values["status"] = CANCELLED
                values["finished_at"] = now
        result = await conn.execute(
            update(broadcasts)
            .where(broadcasts.c.id == broadcast_id, broadcasts.c.status.in_(allowed[action]))
            .values(**values)
        )
        if result.rowcount != 1:
            raise InvalidInput(f"this broadcast is {b.status}; it cannot {action} now")
        await audit.record(
            conn,
            actor=actor,
            action=f"broadcast.{action}",
            target_type="broadcast",
            target_id=broadcast_id,
            reason=None,
            detail=None,
            now=now,
        )
        return await get(conn, broadcast_id)


async def enqueue_due(
    db: Database, now: datetime, *, per_second: float = PER_SECOND, interval_s: float = 5.0
) -> int:
    """Queue the next batch of every sending broadcast (oldest first, one shared budget);
    finish those whose audience is exhausted and whose rows have all been settled.
    Returns how many messages were queued."""
    budget = max(1, int(per_second * interval_s))
    queued = 0
    async with db.read() as conn:
        ids = [
            r[0]
            for r in await conn.execute(
                select(broadcasts.c.id).where(broadcasts.c.status == SENDING).order_by(broadcasts.c.id)
            )
        ]
    for broadcast_id in ids:
        async with db.begin() as conn:
            # Lock the broadcast so two schedulers never queue the same batch twice over.
            row = (
                await conn.execute(
                    select(broadcasts)
                    .where(broadcasts.c.id == broadcast_id, broadcasts.c.status == SENDING)
                    .with_for_update()
                )
            ).first()
            if row is None:
                continue
            b = _from_row(row)
            waiting = int(
                await conn.scalar(
                    select(func.count())
                    .select_from(outbox_table)
                    .where(_rows_of(b.id), outbox_table.c.status == outbox.PENDING)
                )
                or 0
            )
            room = min(budget - queued, budget - waiting)
            if room <= 0:
                continue
            where = audience_where(b.audience, b.audience_value, now)
            batch = (
                await conn.execute(
                    select(users.c.id, users.c.telegram_id)
                    .where(users.c.id > b.cursor_user_id, *where)
                    .order_by(users.c.id)
                    .limit(room)
                )
            ).all()
            added = 0
            for user_id, telegram_id in batch:
                added += await outbox.enqueue(
                    conn,
                    kind=KIND,
                    chat_id=telegram_id,
                    payload={"broadcast_id": b.id},
                    dedupe_key=_dedupe_key(b.id, user_id),
                    now=now,
                )
            values: dict[str, Any] = {"updated_at": now, "enqueued": broadcasts.c.enqueued + added}
            if batch:
                values["cursor_user_id"] = batch[-1][0]
            elif waiting == 0:
                values.update(status=DONE, finished_at=now)
            await conn.execute(update(broadcasts).where(broadcasts.c.id == b.id).values(**values))
            queued += added
    return queued
