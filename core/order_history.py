"""A buyer's order history, a page at a time, with a status filter.

Keyset pagination: a page is "the N newest orders older than this (created_at, id)", so a
page costs the same however far back it is (OFFSET would read and discard every earlier
row) and an order bought while the buyer pages cannot shift a row onto two pages.

The filters are in the buyer's words: ``active`` is an order still getting its number or
waiting for a code; ``refunded`` is every order whose money came back (cancelled, expired,
not available, or refunded after the code).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, bindparam, or_, select

from core.db.tables import orders
from core.errors import InvalidInput
from core.order_states import OrderStatus
from core.orders.view import JOINED, ORDER_COLUMNS, OrderView, view

if TYPE_CHECKING:
    from core.db.engine import Database

FILTERS: dict[str, tuple[OrderStatus, ...] | None] = {
    "all": None,
    "active": (OrderStatus.RESERVING, OrderStatus.WAITING),
    "completed": (OrderStatus.COMPLETED,),
    "refunded": (OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.FAILED, OrderStatus.REFUNDED),
}
MAX_PAGE = 50

_PAGE = (
    select(*ORDER_COLUMNS)
    .select_from(JOINED)
    .where(orders.c.user_id == bindparam("user_id"))
    .order_by(orders.c.created_at.desc(), orders.c.id.desc())
    .limit(bindparam("limit"))
)


@dataclass(frozen=True, slots=True)
class Page:
    orders: list[OrderView]
    next_cursor: tuple[datetime, str] | None  # the last row's key when an older page exists


async def order_page(
    db: Database,
    *,
    user_id: int,
    status_filter: str = "all",
    limit: int = 5,
    before: tuple[datetime, str] | None = None,
) -> Page:
    """The ``limit`` newest orders of the user matching the filter, older than ``before``."""
    if status_filter not in FILTERS:
        raise InvalidInput(f"unknown filter {status_filter!r}; use one of " + ", ".join(FILTERS))
    limit = max(1, min(limit, MAX_PAGE))
    q = _PAGE
    statuses = FILTERS[status_filter]
    if statuses is not None:
        q = q.where(orders.c.status.in_([s.value for s in statuses]))
    if before is not None:
        q = q.where(
            or_(
                orders.c.created_at < before[0],
                and_(orders.c.created_at == before[0], orders.c.id < before[1]),
            )
        )
    async with db.read() as conn:
        rows = (await conn.execute(q, {"user_id": user_id, "limit": limit + 1})).mappings().all()
    found = [view(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(found, (found[-1].created_at, found[-1].id) if more and found else None)
