"""What an order looks like to callers, and the reads that produce it.

Statements are built once at import: every order screen runs them, and the hot path only
binds parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from core.db.chunks import chunks
from core.db.engine import Database
from core.db.tables import order_events, order_messages, orders, transfers, users
from core.errors import InvalidInput, OrderNotFound
from core.order_states import OPEN, OrderStatus, UpstreamState
from core.providers.base import SmsMessage


@dataclass(frozen=True, slots=True)
class OrderView:
    id: str
    user_id: int
    telegram_id: int | None
    service: str
    country: str
    price: int
    cost: int | None
    status: OrderStatus
    provider: str | None
    activation_id: str | None
    phone: str | None
    code: str | None
    can_request_another: bool
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    failure_reason: str | None
    upstream_state: UpstreamState
    hold_transfer_id: str
    version: int
    upstream_attempts: int = 0
    chat_id: int | None = None
    message_id: int | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


def number_open(order: OrderView, now: datetime) -> bool:
    """After its first code the number stays open for more codes (free) until the buyer
    taps Done or the deadline passes; only then is it finished upstream."""
    return (
        order.status == OrderStatus.COMPLETED
        and order.upstream_state == UpstreamState.ACTIVE
        and order.activation_id is not None
        and (order.expires_at is None or order.expires_at > now)
    )


@dataclass(frozen=True, slots=True)
class DoneResult:
    order: OrderView
    already: bool = False  # the number was closed before this call (Done twice, or the deadline)


@dataclass(frozen=True, slots=True)
class AnotherCodeResult:
    order: OrderView
    already: bool = False  # this request was already made (a double tap): asked once


@dataclass(frozen=True, slots=True)
class OrderDetail:
    order: OrderView
    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CancelResult:
    order: OrderView
    refunded: int  # minor units returned to the wallet by this call (0 if not by this call)
    already: bool = False  # the order was already cancelled before this call
    completed_instead: bool = False  # a code had arrived: the order completed, nothing refunded


ORDER_COLUMNS = [*orders.c, users.c.telegram_id]


def view(row: Mapping[Any, Any]) -> OrderView:
    return OrderView(
        id=row["id"],
        user_id=row["user_id"],
        telegram_id=row.get("telegram_id"),
        service=row["service"],
        country=row["country"],
        price=row["price"],
        cost=row["cost"],
        status=OrderStatus(row["status"]),
        provider=row["provider"],
        activation_id=row["activation_id"],
        phone=row["phone"],
        code=row["code"],
        can_request_another=bool(row["can_request_another"]),
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        closed_at=row["closed_at"],
        failure_reason=row["failure_reason"],
        upstream_state=UpstreamState(row["upstream_state"]),
        hold_transfer_id=row["hold_transfer_id"],
        version=row["version"],
        chat_id=row["chat_id"],
        message_id=row["message_id"],
        upstream_attempts=row["upstream_attempts"],
    )


JOINED = orders.join(users, users.c.id == orders.c.user_id)
IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_LOAD = select(*ORDER_COLUMNS).select_from(JOINED).where(orders.c.id == bindparam("order_id"))
LOAD_MANY = select(*ORDER_COLUMNS).select_from(JOINED).where(orders.c.id.in_(IDS))
# Under a share lock (PostgreSQL; SQLite's writer is alone anyway): a concurrent transition
# of these orders waits for our commit, or we see its result.
LOCK_MANY = LOAD_MANY.with_for_update(read=True, of=orders)
SEEN_MANY = select(order_messages.c.order_id, order_messages.c.code, order_messages.c.text).where(
    order_messages.c.order_id.in_(IDS)
)
# Newest first, built once: every My orders screen asks for a user's; filters (the
# dashboard's) are added per call.
_NEWEST = (
    select(*ORDER_COLUMNS)
    .select_from(JOINED)
    .order_by(orders.c.created_at.desc(), orders.c.id.desc())
    .limit(bindparam("limit"))
)
_NEWEST_OF_USER = _NEWEST.where(orders.c.user_id == bindparam("user_id"))
CHARGE = update(order_messages).where(order_messages.c.id.in_(IDS)).values(charged=True)
_KNOWN = select(order_messages.c.order_id, order_messages.c.provider_message_id).where(
    order_messages.c.order_id.in_(IDS)
)


async def load(conn: AsyncConnection, order_id: str) -> OrderView | None:
    row = (await conn.execute(_LOAD, {"order_id": order_id})).mappings().one_or_none()
    return view(row) if row else None


async def load_many(conn: AsyncConnection, order_ids: list[str]) -> list[OrderView]:
    out: list[OrderView] = []
    for chunk in chunks(order_ids):
        out += [view(r) for r in (await conn.execute(LOAD_MANY, {"ids": chunk})).mappings()]
    return out


_VIEW_FIELDS = frozenset(OrderView.__dataclass_fields__)


def with_(order: OrderView, **changes: Any) -> OrderView:
    """The view after an UPDATE we just made, without reading the row back."""
    return replace(order, **{k: v for k, v in changes.items() if k in _VIEW_FIELDS})


def message_id(msg: SmsMessage) -> str:
    return msg.message_id or f"code:{msg.code}:{msg.text}"[:128]


async def known_messages(conn: AsyncConnection, order_ids: list[str]) -> set[tuple[str, str]]:
    """(order id, provider message id) of every message already stored for these orders."""
    known: set[tuple[str, str]] = set()
    for chunk in chunks(order_ids):
        known.update((r[0], r[1]) for r in await conn.execute(_KNOWN, {"ids": chunk}))
    return known


async def get_order(db: Database, order_id: str, *, user_id: int | None = None) -> OrderView:
    async with db.read() as conn:
        order = await load(conn, order_id)
    if order is None or (user_id is not None and order.user_id != user_id):
        raise OrderNotFound(f"no order {order_id}")
    return order


async def get_order_detail(db: Database, order_id: str) -> OrderDetail:
    async with db.read() as conn:
        order = await load(conn, order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id}")
        msgs = (
            (
                await conn.execute(
                    select(order_messages)
                    .where(order_messages.c.order_id == order_id)
                    .order_by(order_messages.c.id)
                )
            )
            .mappings()
            .all()
        )
        events = (
            (
                await conn.execute(
                    select(order_events)
                    .where(order_events.c.order_id == order_id)
                    .order_by(order_events.c.id)
                )
            )
            .mappings()
            .all()
        )
        xfers = (
            (
                await conn.execute(
                    select(transfers)
                    .where(transfers.c.order_id == order_id)
                    .order_by(transfers.c.created_at, transfers.c.kind)
                )
            )
            .mappings()
            .all()
        )
    return OrderDetail(order, [dict(m) for m in msgs], [dict(e) for e in events], [dict(t) for t in xfers])


async def list_orders(
    db: Database,
    *,
    user_id: int | None = None,
    status: str | None = None,
    limit: int = 20,
    before: tuple[datetime, str] | None = None,
) -> list[OrderView]:
    if status is not None and status not in {s.value for s in OrderStatus}:
        raise InvalidInput(
            f"unknown status {status!r}; use one of " + ", ".join(s.value for s in OrderStatus)
        )
    q = _NEWEST if user_id is None else _NEWEST_OF_USER
    if status is not None:
        q = q.where(orders.c.status == status)
    if before is not None:
        q = q.where(
            or_(
                orders.c.created_at < before[0],
                and_(orders.c.created_at == before[0], orders.c.id < before[1]),
            )
        )
    async with db.read() as conn:
        rows = (await conn.execute(q, {"limit": limit, "user_id": user_id})).mappings().all()
    return [view(r) for r in rows]
