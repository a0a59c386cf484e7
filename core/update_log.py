"""Telegram update ids already handled, so a redelivered update has its effect once.

An id is written when its update has been handled, not when it arrives: a worker killed
mid-update leaves no row, so the redelivery Telegram sends (the webhook never got its 200,
or the poller never confirmed the offset) is handled again instead of dropped unanswered.
Handling twice is safe because every effect is idempotent on its own key (a purchase on its
quote, a cancel on its order's state, a payment on its charge id).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select
from sqlalchemy.sql import Insert

from core.db.engine import insert_ignore
from core.db.tables import processed_updates

if TYPE_CHECKING:
    from core.db.engine import KeptConnection

# Built once: the bot runs both for every update, and building a statement costs about as
# much CPU as running it.
_RECORD: dict[str, Insert] = {}  # per dialect
_HANDLED = select(processed_updates.c.update_id).where(
    processed_updates.c.update_id.in_(bindparam("ids", expanding=True))
)


async def record_updates(conn: KeptConnection, update_ids: Iterable[int], now: datetime) -> set[int]:
    """Record ``update_ids``; the ones recorded now (the others were seen before).

    One statement with the rows as parameters (SQLAlchemy batches them into multi-row
    INSERTs); each row stands alone, so it needs no transaction around it, and concurrent
    updates can share one call (the bot's group commit)."""
    dialect = conn.db.dialect
    statement = _RECORD.get(dialect)
    if statement is None:
        statement = _RECORD[dialect] = insert_ignore(conn.db, processed_updates).returning(
            processed_updates.c.update_id
        )
    written = await conn.write(statement, [{"update_id": i, "received_at": now} for i in update_ids])
    return {int(row[0]) for row in written.rows}


async def handled_among(conn: KeptConnection, update_ids: Iterable[int]) -> set[int]:
    """The ids of ``update_ids`` already handled (one indexed read for a batch)."""
    found = await conn.read(_HANDLED, {"ids": list(update_ids)})
    return {int(row[0]) for row in found.rows}
