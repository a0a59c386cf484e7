"""The audit log: who changed money or orders, why, and when.

``record`` takes the caller's connection on purpose: the audit row commits in the same
transaction as the change it describes, so there is never a change without its row or a row
for a change that rolled back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.tables import audit_log


async def record(
    conn: AsyncConnection,
    *,
    actor: str,
    action: str,
    target_type: str | None = None,
    target_id: str | int | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime,
) -> int:
    """Append one audit row and return its id."""
    result = await conn.execute(
        audit_log.insert().values(
            actor=actor[:64],
            action=action[:48],
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            reason=reason,
            detail=detail,
            created_at=now,
        )
    )
    key = result.inserted_primary_key
    assert key is not None  # None only for an executemany; this INSERT is one row
    return int(key[0])
