"""Idempotency keys: the same request, retried, has the same effect once.

A key is claimed inside the transaction that performs the effect, so the claim and the effect
commit together. Outcomes of ``claim``:

* fresh → ``None``; the caller performs the effect and may ``set_result``/``finish``.
* same fingerprint, done → the stored result (replay).
* same fingerprint, still in progress with a live lock → ``AlreadyInProgress``.
* same fingerprint, lock expired (the first attempt crashed) → the stored result if the first
  attempt recorded one (its effect committed, so it must not happen twice), else the claim is
  taken over and the caller proceeds.
* different fingerprint → ``IdempotencyConflict``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.engine import Database, insert_ignore
from core.db.tables import idempotency_keys as keys
from core.errors import AlreadyInProgress, IdempotencyConflict

IN_PROGRESS, DONE = "in_progress", "done"
RETENTION_DAYS = 7


def fingerprint(*parts: object) -> str:
    raw = json.dumps([str(p) for p in parts], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


async def claim(
    conn: AsyncConnection,
    *,
    key: str,
    scope: str,
    fingerprint: str,
    now: datetime,
    lock_seconds: float = 60,
    result: Any = None,
) -> Any | None:
    """Claim ``key`` for this request. With ``result``, the claim is stored as done at once:
    for effects that commit whole in the claiming transaction (their later progress is
    tracked on the object they created, e.g. the order's status)."""
    locked_until = now + timedelta(seconds=lock_seconds)
    inserted = await conn.execute(
        insert_ignore(conn, keys),
        dict(
            key=key,
            scope=scope,
            fingerprint=fingerprint,
            state=IN_PROGRESS if result is None else DONE,
            result=result,
            locked_until=None if result is not None else locked_until,
            created_at=now,
            updated_at=now,
        ),
    )
    if inserted.rowcount == 1:
        return None
    row = (await conn.execute(select(keys).where(keys.c.key == key))).mappings().one()
    if row["fingerprint"] != fingerprint or row["scope"] != scope:
        raise IdempotencyConflict(f"key {key!r} was already used for a different request")
    if row["state"] == DONE:
        return row["result"]
    if row["locked_until"] is not None and row["locked_until"] > now:
        raise AlreadyInProgress(row["result"])
    if row["result"] is not None:
        return row["result"]
    taken = await conn.execute(
        update(keys)
        .where(keys.c.key == key, keys.c.locked_until == row["locked_until"])
        .values(locked_until=locked_until, updated_at=now)
    )
    if taken.rowcount != 1:
        raise AlreadyInProgress(None)
    return None


_EXISTS = select(keys.c.key).where(keys.c.key == bindparam("key"))  # every purchase asks


async def exists(conn: AsyncConnection, key: str) -> bool:
    return await conn.scalar(_EXISTS, {"key": key}) is not None


async def set_result(conn: AsyncConnection, key: str, result: Any, now: datetime) -> None:
    """Record what the attempt produced while it is still running (e.g. the order id)."""
    await conn.execute(update(keys).where(keys.c.key == key).values(result=result, updated_at=now))


async def finish(conn: AsyncConnection, key: str, result: Any, now: datetime) -> None:
    await conn.execute(
        update(keys)
        .where(keys.c.key == key)
        .values(state=DONE, result=result, locked_until=None, updated_at=now)
    )


async def reap(db: Database, now: datetime, retention_days: int = RETENTION_DAYS) -> int:
    async with db.begin() as conn:
        result = await conn.execute(
            delete(keys).where(keys.c.created_at < now - timedelta(days=retention_days))
        )
    return int(result.rowcount or 0)
