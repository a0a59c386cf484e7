"""The confirm screen a buyer left to top up, so the shop can offer to go back to it.

It is read from the quotes table rather than kept anywhere else: every confirm screen stores
its quote, so the newest quote of a user that no order has used yet *is* the confirm
screen they came from, and the answer is the same whichever bot worker asks, and survives a
restart or a /start that clears the conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, exists, select

from core.db.tables import orders, quotes

if TYPE_CHECKING:
    from core.db.engine import Database

# A confirm screen older than this is no longer "where the buyer came from".
PENDING_WITHIN = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class PendingConfirm:
    quote_id: str
    service: str
    country: str
    price: int
    expires_at: datetime
    used: bool  # an order was bought with this quote

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


_USED = exists().where(orders.c.quote_id == quotes.c.id)
_COLUMNS = (
    quotes.c.id,
    quotes.c.user_id,
    quotes.c.service,
    quotes.c.country,
    quotes.c.price,
    quotes.c.expires_at,
    _USED.label("used"),
)
_NEWEST = (
    select(*_COLUMNS)
    .where(quotes.c.user_id == bindparam("user_id"), quotes.c.created_at >= bindparam("since"))
    .order_by(quotes.c.created_at.desc())
    .limit(1)
)
_ONE = select(*_COLUMNS).where(quotes.c.id == bindparam("quote_id"))


def _pending(row: Any) -> PendingConfirm:
    return PendingConfirm(
        quote_id=row.id,
        service=row.service,
        country=row.country,
        price=int(row.price),
        expires_at=row.expires_at,
        used=bool(row.used),
    )


async def pending_confirm(db: Database, user_id: int, now: datetime) -> PendingConfirm | None:
    """The user's newest confirm screen of the last hour that no order used, else None."""
    async with db.read() as conn:
        row = (await conn.execute(_NEWEST, {"user_id": user_id, "since": now - PENDING_WITHIN})).one_or_none()
    if row is None or row.used:
        return None
    return _pending(row)


async def confirm_of_quote(db: Database, quote_id: str, user_id: int) -> PendingConfirm | None:
    """The quote behind a Continue button, expired or not; None when unknown or another
    user's (not disclosed)."""
    async with db.read() as conn:
        row = (await conn.execute(_ONE, {"quote_id": str(quote_id)})).one_or_none()
    if row is None or row.user_id != user_id:
        return None
    return _pending(row)
