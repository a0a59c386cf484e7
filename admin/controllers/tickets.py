"""Tickets: the buyers' "code didn't work" reports, open ones first with their age; a
ticket with its order's timeline and messages; resolve with a refund (admin, as any refund
of a completed order) or reject with a message to the buyer (support).

Both actions go through ``core.tickets``, which is idempotent by the ticket's state; the
form nonce on top makes a resubmitted form say so instead of acting again.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get, post
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from admin import queries
from admin.forms import (
    ALREADY_SUBMITTED,
    AlreadySubmitted,
    FormError,
    acting_once,
    error_message,
    error_status,
    idempotency_key,
)
from admin.params import IntIdPath
from admin.render import ctx_of, flash, page, see_other
from core import tickets
from core.errors import ShopError
from core.money import format_amount

MAX_NOTE = tickets.MAX_NOTE
# ``state`` is a name Litestar reserves for the app state, so the parameter is renamed.
StateQ = Annotated[str | None, QueryParameter(name="state", max_length=20)]


@get("/tickets", opt={"role": "viewer"})
async def tickets_page(request: Request[Any, Any, Any], ticket_state: StateQ = None) -> Template:
    ctx = ctx_of(request)
    wanted = ticket_state if ticket_state in {s.value for s in tickets.TicketState} else None
    found = await tickets.list_tickets(ctx.db, state=wanted, limit=200)
    now = ctx.clock.now()
    return page(
        request,
        "tickets.html",
        tickets=found,
        ages={t.id: ((t.closed_at or now) - t.created_at).total_seconds() for t in found},
        state=wanted,
        states=[s.value for s in tickets.TicketState],
    )


async def ticket_page(
    request: Request[Any, Any, Any],
    ticket_id: int,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, Any] | None = None,
) -> Template:
    ctx = ctx_of(request)
    ticket = await tickets.get_ticket(ctx.db, ticket_id)
    async with ctx.db.read() as conn:
        order = await queries.order_detail(conn, ticket.order_id)
    return page(
        request,
        "ticket.html",
        status=status,
        error=error,
        t=ticket,
        o=order,
        age=((ticket.closed_at or ctx.clock.now()) - ticket.created_at).total_seconds(),
        form=form or {},
        max_note=MAX_NOTE,
    )


@get("/tickets/{ticket_id:int}", opt={"role": "viewer"})
async def ticket_detail(request: Request[Any, Any, Any], ticket_id: IntIdPath) -> Template:
    return await ticket_page(request, ticket_id)


def _note(form: dict[str, Any], *, required: bool) -> str:
    text = str(form.get("note") or "").strip()
    if required and not text:
        raise FormError("write the message the buyer will read")
    if len(text) > MAX_NOTE:
        raise FormError(f"the message is longer than {MAX_NOTE} characters")
    return text


async def _act(request: Request[Any, Any, Any], ticket_id: int, action: str) -> Template | Redirect:
    ctx = ctx_of(request)
    form = dict(await request.form())
    try:
        key = idempotency_key(request.user, form)
        note = _note(form, required=action == "reject")
        async with acting_once(ctx.nonces, key):
            if action == "resolve":
                out = await tickets.resolve(
                    ctx.db, ctx.clock, ctx.core.orders, ticket_id, actor=request.user.actor, note=note or None
                )
            else:
                out = await tickets.reject(ctx.db, ctx.clock, ticket_id, actor=request.user.actor, note=note)
    except AlreadySubmitted:
        flash(request, ALREADY_SUBMITTED)
        return see_other(f"/tickets/{ticket_id}")
    except FormError as exc:
        return await ticket_page(request, ticket_id, status=exc.status, error=exc.message, form=form)
    except tickets.TicketNotFound:
        raise
    except tickets.TicketClosed as exc:
        return await ticket_page(request, ticket_id, status=409, error=str(exc), form=form)
    except ShopError as exc:
        return await ticket_page(
            request, ticket_id, status=error_status(exc), error=error_message(exc, ctx.currency), form=form
        )
    if not out.changed:
        flash(request, f"The ticket was already {out.ticket.state}; nothing more was done.")
    elif action == "resolve":
        flash(
            request, f"Resolved: {format_amount(out.ticket.price, ctx.currency)} refunded; the buyer is told."
        )
    else:
        flash(request, "Rejected; the buyer gets your message.")
    return see_other(f"/tickets/{ticket_id}")


@post("/tickets/{ticket_id:int}/resolve", opt={"role": "admin"})
async def resolve(request: Request[Any, Any, Any], ticket_id: IntIdPath) -> Template | Redirect:
    return await _act(request, ticket_id, "resolve")


@post("/tickets/{ticket_id:int}/reject", opt={"role": "support"})
async def reject(request: Request[Any, Any, Any], ticket_id: IntIdPath) -> Template | Redirect:
    return await _act(request, ticket_id, "reject")


HANDLERS = [tickets_page, ticket_detail, resolve, reject]
