"""Support tickets: a buyer's "code didn't work" report on a completed order, and its outcome.

One ticket per order, ever: the unique ``order_id`` is what two concurrent taps meet, so
exactly one insert wins and the other is told a ticket already exists. A buyer may report
only their own order, only once it is completed, and only within ``TICKET_WINDOW`` of the
code arriving (after that the number has long been used, and the order's history is the
evidence staff go by).

Staff close a ticket one of two ways, both audited and idempotent:

* **resolve** returns the order's price through the post-capture refund service
  (``OrderService.staff_refund``, a compare-and-set transition, so two resolves refund once).
  The ticket is first claimed (``open`` → ``resolving``) so a concurrent reject cannot close
  it between the refund and the ticket's own update; a resolve that died after its claim is
  finished by the next resolve, which the refund's idempotency makes safe.
* **reject** closes an ``open`` ticket with a note for the buyer; nothing moves.

Either way the buyer is told through the outbox, in the transaction that closed the ticket.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit, outbox
from core.db.engine import insert_ignore
from core.db.tables import orders, tickets, users
from core.errors import InvalidInput, NotFound, OrderNotFound, ShopError
from core.order_states import OrderStatus

if TYPE_CHECKING:
    from core.clock import Clock
    from core.db.engine import Database
    from core.orders import OrderService

TICKET_WINDOW = timedelta(minutes=30)
REASON_CODE_DIDNT_WORK = "code_didnt_work"
MAX_NOTE = 1000


class TicketState(enum.StrEnum):
    OPEN = "open"
    RESOLVING = "resolving"  # claimed by a resolve whose refund is under way
    RESOLVED = "resolved"
    REJECTED = "rejected"


class TicketNotFound(NotFound):
    pass


class TicketRefused(ShopError):
    """A ticket the buyer may not open; ``why`` names the rule for the one sentence they read:
    ``exists`` (a second ticket), ``not_completed``, ``too_late``."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class TicketClosed(ShopError):
    """The staff action does not fit the ticket's state (reject a resolved one, …)."""

    def __init__(self, ticket_id: int, state: str, wanted: str) -> None:
        super().__init__(f"ticket {ticket_id} is {state}; cannot {wanted}")
        self.ticket_id = ticket_id
        self.state = state


@dataclass(frozen=True, slots=True)
class Ticket:
    id: int
    order_id: str
    user_id: int
    telegram_id: int | None
    reason: str
    state: TicketState
    staff_note: str | None
    closed_by: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    service: str
    country: str
    price: int
    order_status: str

    @property
    def is_open(self) -> bool:
        return self.state in (TicketState.OPEN, TicketState.RESOLVING)


@dataclass(frozen=True, slots=True)
class Outcome:
    ticket: Ticket
    changed: bool  # False: this call found the work already done (a repeat or a lost race)


_COLUMNS = [
    *tickets.c,
    users.c.telegram_id,
    orders.c.service,
    orders.c.country,
    orders.c.price,
    orders.c.status.label("order_status"),
]
_JOINED = tickets.join(orders, orders.c.id == tickets.c.order_id).join(users, users.c.id == tickets.c.user_id)
_SELECT = select(*_COLUMNS).select_from(_JOINED)


def _ticket(row: Mapping[Any, Any]) -> Ticket:
    return Ticket(
        id=row["id"],
        order_id=row["order_id"],
        user_id=row["user_id"],
        telegram_id=row["telegram_id"],
        reason=row["reason"],
        state=TicketState(row["state"]),
        staff_note=row["staff_note"],
        closed_by=row["closed_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        closed_at=row["closed_at"],
        service=row["service"],
        country=row["country"],
        price=int(row["price"]),
        order_status=row["order_status"],
    )


async def _load(conn: AsyncConnection, ticket_id: int) -> Ticket | None:
    row = (await conn.execute(_SELECT.where(tickets.c.id == ticket_id))).mappings().one_or_none()
    return _ticket(row) if row else None


async def _must(conn: AsyncConnection, ticket_id: int) -> Ticket:
    found = await _load(conn, ticket_id)
    if found is None:
        raise TicketNotFound(f"no ticket {ticket_id}")
    return found


# ------------------------------------------------------------------------- the buyer


async def open_ticket(
    db: Database,
    clock: Clock,
    *,
    order_id: str,
    user_id: int,
    reason: str = REASON_CODE_DIDNT_WORK,
    staff_chat_id: int | None = None,
) -> Ticket:
    """Open the order's one ticket for its buyer.

    ``OrderNotFound`` for an unknown or foreign order (a foreign order is not disclosed);
    ``TicketRefused`` when the order is not completed, completed too long ago, or already
    has a ticket. Nothing is written in any of those cases.
    """
    now = clock.now()
    async with db.begin() as conn:
        order = (
            await conn.execute(
                select(orders.c.user_id, orders.c.status, orders.c.closed_at, orders.c.service).where(
                    orders.c.id == str(order_id)
                )
            )
        ).one_or_none()
        if order is None or order.user_id != user_id:
            raise OrderNotFound(f"no order {order_id}")
        existing = (
            await conn.execute(select(tickets.c.id).where(tickets.c.order_id == str(order_id)))
        ).scalar_one_or_none()
        if existing is not None:
            raise TicketRefused("exists")
        if order.status != OrderStatus.COMPLETED:
            raise TicketRefused("not_completed")
        if order.closed_at is None or now - order.closed_at > TICKET_WINDOW:
            raise TicketRefused("too_late")
        inserted = await conn.execute(
            insert_ignore(conn, tickets),
            dict(
                order_id=str(order_id),
                user_id=user_id,
                reason=reason[:64],
                state=TicketState.OPEN.value,
                created_at=now,
                updated_at=now,
            ),
        )
        if inserted.rowcount != 1:  # a concurrent tap inserted first
            raise TicketRefused("exists")
        ticket = await _load_by_order(conn, str(order_id))
        if staff_chat_id is not None:
            await outbox.enqueue(
                conn,
                kind="staff_alert",
                chat_id=staff_chat_id,
                payload={"text": f"Ticket {ticket.id}: code didn't work, order {order_id} ({order.service})"},
                dedupe_key=f"ticket:{ticket.id}:staff",
                now=now,
            )
    return ticket


async def _load_by_order(conn: AsyncConnection, order_id: str) -> Ticket:
    row = (await conn.execute(_SELECT.where(tickets.c.order_id == order_id))).mappings().one()
    return _ticket(row)


async def ticket_of_order(db: Database, order_id: str) -> Ticket | None:
    async with db.read() as conn:
        result = await conn.execute(_SELECT.where(tickets.c.order_id == str(order_id)))
        row = result.mappings().one_or_none()
    return _ticket(row) if row else None


# ------------------------------------------------------------------------- staff reads


async def get_ticket(db: Database, ticket_id: int) -> Ticket:
    async with db.read() as conn:
        return await _must(conn, ticket_id)


async def list_tickets(db: Database, *, state: str | None = None, limit: int = 50) -> list[Ticket]:
    """Open tickets first, oldest first (the longest waiting on top); then closed ones,
    most recently closed first."""
    if state is not None and state not in {s.value for s in TicketState}:
        raise InvalidInput(f"unknown state {state!r}; use one of " + ", ".join(s.value for s in TicketState))
    open_first = case((tickets.c.state.in_(["open", "resolving"]), 0), else_=1)
    q = _SELECT.order_by(
        open_first,
        case((open_first == 0, tickets.c.created_at), else_=None).asc(),
        tickets.c.closed_at.desc(),
        tickets.c.id.desc(),
    ).limit(max(1, min(limit, 500)))
    if state is not None:
        q = q.where(tickets.c.state == state)
    async with db.read() as conn:
        return [_ticket(r) for r in (await conn.execute(q)).mappings()]


async def count_open(db: Database) -> int:
    async with db.read() as conn:
        count = await conn.scalar(
            select(func.count()).select_from(tickets).where(tickets.c.state.in_(["open", "resolving"]))
        )
        return int(count or 0)


# ------------------------------------------------------------------------- staff actions


def _note(note: str | None, *, required: bool) -> str | None:
    text = (note or "").strip()
    if required and not text:
        raise InvalidInput("a message to the buyer is required")
    if len(text) > MAX_NOTE:
        raise InvalidInput(f"the message is longer than {MAX_NOTE} characters")
    return text or None


async def _tell_buyer(conn: AsyncConnection, ticket: Ticket, state: TicketState, now: datetime) -> None:
    if ticket.telegram_id is None:
        return
    await outbox.enqueue(
        conn,
        kind="ticket",
        chat_id=ticket.telegram_id,
        order_id=ticket.order_id,
        payload={
            "ticket_id": ticket.id,
            "state": state.value,
            "note": ticket.staff_note,
            "service": ticket.service,
            "country": ticket.country,
            "price": ticket.price,
        },
        dedupe_key=f"ticket:{ticket.id}:{state.value}",
        now=now,
    )


async def resolve(
    db: Database,
    clock: Clock,
    orders_svc: OrderService,
    ticket_id: int,
    *,
    actor: str,
    note: str | None = None,
) -> Outcome:
    """Refund the order and close the ticket as resolved. A repeat returns ``changed=False``
    and refunds nothing; ``TicketClosed`` on a rejected ticket."""
    text = _note(note, required=False)
    now = clock.now()
    async with db.begin() as conn:
        ticket = await _must(conn, ticket_id)
        if ticket.state == TicketState.RESOLVED:
            return Outcome(ticket, changed=False)
        if ticket.state == TicketState.REJECTED:
            raise TicketClosed(ticket.id, ticket.state, "resolve")
        if ticket.order_status not in (OrderStatus.COMPLETED, OrderStatus.REFUNDED):
            raise TicketClosed(ticket.id, f"on a {ticket.order_status} order", "refund")
        claimed = await conn.execute(
            update(tickets)
            .where(tickets.c.id == ticket_id, tickets.c.state.in_(["open", "resolving"]))
            .values(state=TicketState.RESOLVING.value, updated_at=now)
        )
        if claimed.rowcount != 1:  # a reject or another resolve closed it meanwhile
            ticket = await _must(conn, ticket_id)
    if claimed.rowcount != 1:
        if ticket.state == TicketState.RESOLVED:
            return Outcome(ticket, changed=False)
        raise TicketClosed(ticket.id, ticket.state, "resolve")
    # The refund runs in its own transaction (the service owns it) and is idempotent per
    # order: a concurrent or repeated resolve reaches here too and refunds nothing more.
    await orders_svc.staff_refund(
        ticket.order_id,
        actor=actor,
        reason=f"ticket {ticket.id}: code didn't work",
        idempotency_key=f"ticket:{ticket.id}",
    )
    async with db.begin() as conn:
        done = await conn.execute(
            update(tickets)
            .where(tickets.c.id == ticket_id, tickets.c.state == TicketState.RESOLVING.value)
            .values(
                state=TicketState.RESOLVED.value,
                staff_note=text,
                closed_by=actor[:64],
                closed_at=now,
                updated_at=now,
            )
        )
        ticket = await _must(conn, ticket_id)
        if done.rowcount != 1:
            return Outcome(ticket, changed=False)
        await audit.record(
            conn,
            actor=actor,
            action="ticket.resolve",
            target_type="ticket",
            target_id=ticket.id,
            reason=text,
            detail={"order_id": ticket.order_id, "refunded": ticket.price},
            now=now,
        )
        await _tell_buyer(conn, ticket, TicketState.RESOLVED, now)
    return Outcome(ticket, changed=True)


async def reject(db: Database, clock: Clock, ticket_id: int, *, actor: str, note: str) -> Outcome:
    """Close an open ticket without a refund, with a message the buyer reads. A repeat
    returns ``changed=False``; ``TicketClosed`` on a resolved or resolving ticket."""
    text = _note(note, required=True)
    now = clock.now()
    async with db.begin() as conn:
        done = await conn.execute(
            update(tickets)
            .where(tickets.c.id == ticket_id, tickets.c.state == TicketState.OPEN.value)
            .values(
                state=TicketState.REJECTED.value,
                staff_note=text,
                closed_by=actor[:64],
                closed_at=now,
                updated_at=now,
            )
        )
        ticket = await _must(conn, ticket_id)
        if done.rowcount != 1:
            if ticket.state == TicketState.REJECTED:
                return Outcome(ticket, changed=False)
            raise TicketClosed(ticket.id, ticket.state, "reject")
        await audit.record(
            conn,
            actor=actor,
            action="ticket.reject",
            target_type="ticket",
            target_id=ticket.id,
            reason=text,
            detail={"order_id": ticket.order_id},
            now=now,
        )
        await _tell_buyer(conn, ticket, TicketState.REJECTED, now)
    return Outcome(ticket, changed=True)
