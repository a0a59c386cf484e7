"""Orders: filtered, keyset-paginated list; an order's timeline; force cancel (support) and
refund of a completed order (admin), both through OrderService like the bot's buttons."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template
from sqlalchemy import select

from core import audit
from core.db.tables import audit_log
from core.errors import OrderNotFound, ShopError
from core.money import format_amount

from admin import queries
from admin.forms import FormError, error_message, error_status, idempotency_key, parse_day, reason_field
from admin.params import OptQ, OrderIdPath
from admin.render import ctx_of, flash, page, see_other


def order_filter(status: str | None, service: str | None, country: str | None, provider: str | None,
                 user: str | None, date_from: str | None, date_to: str | None) -> queries.OrderFilter:
    try:
        flt = queries.OrderFilter(
            status=status or None, service=service or None, country=country or None,
            provider=provider or None, user=user or None,
            date_from=parse_day(date_from, field="from"), date_to=parse_day(date_to, field="to"))
    except FormError as exc:
        raise queries.BadQuery(exc.message) from None
    flt.check()
    return flt


@get("/orders", opt={"role": "viewer"})
async def orders_page(
    request: Request[Any, Any, Any], status: OptQ = None, service: OptQ = None,
    country: OptQ = None, provider: OptQ = None, user: OptQ = None,
    date_from: OptQ = None, date_to: OptQ = None, cursor: OptQ = None,
) -> Template:
    ctx = ctx_of(request)
    flt = order_filter(status, service, country, provider, user, date_from, date_to)
    async with ctx.db.read() as conn:
        result = await queries.list_orders(conn, flt, cursor=cursor, limit=50)
    return page(request, "orders.html", orders=result.rows, next_cursor=result.next_cursor,
                flt=flt, params=flt.as_params(), statuses=queries.ORDER_STATUSES, show_user=True,
                first_page=not cursor)


async def order_page(request: Request[Any, Any, Any], order_id: str, *, status: int = 200,
                     error: str | None = None) -> Template:
    ctx = ctx_of(request)
    async with ctx.db.read() as conn:
        order = await queries.order_detail(conn, order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id}")
        names = await queries.account_names(
            conn, [t["debit_account_id"] for t in order["transfers"]]
            + [t["credit_account_id"] for t in order["transfers"]])
    return page(request, "order.html", status=status, error=error, o=order,
                transfers=order["transfers"], names=names)


@get("/orders/{order_id:str}", opt={"role": "viewer"})
async def order_detail(request: Request[Any, Any, Any], order_id: OrderIdPath) -> Template:
    return await order_page(request, order_id[:64])


async def cancel_order(ctx: Any, me: Any, order_id: str, reason: str) -> Any:
    result = await ctx.core.orders.cancel(order_id, actor=me.actor, reason=reason)
    if result.refunded and not result.already:
        await _audit_once(ctx, me, "order.cancel", order_id, reason, {"refunded": result.refunded})
    return result


async def _audit_once(ctx: Any, me: Any, action: str, order_id: str, reason: str, detail: dict[str, Any]) -> None:
    """Audit a staff cancel unless core already did.

    OrderService.cancel records the staff actor and reason in the order's event (same
    transaction as the refund) but not in audit_log; this adds the audit row right after,
    and becomes a no-op once core writes it itself.
    """
    async with ctx.db.begin() as conn:
        exists = await conn.scalar(select(audit_log.c.id).where(
            audit_log.c.action == action, audit_log.c.target_id == order_id).limit(1))
        if exists is None:
            await audit.record(conn, actor=me.actor, action=action, target_type="order",
                               target_id=order_id, reason=reason, detail=detail, now=ctx.clock.now())


@post("/orders/{order_id:str}/cancel", opt={"role": "support"})
async def cancel(request: Request[Any, Any, Any], order_id: OrderIdPath) -> Template | Redirect:
    ctx = ctx_of(request)
    form = dict(await request.form())
    try:
        idempotency_key(request.user, form)
        reason = reason_field(form)
        result = await cancel_order(ctx, request.user, order_id, reason)
    except FormError as exc:
        return await order_page(request, order_id, status=exc.status, error=exc.message)
    except OrderNotFound:
        raise
    except ShopError as exc:
        return await order_page(request, order_id, status=error_status(exc), error=error_message(exc, ctx.currency))
    if result.completed_instead:
        flash(request, "A code had already arrived: the order completed and nothing was refunded.", "error")
    elif result.already:
        flash(request, "The order was already cancelled; nothing more was refunded.")
    else:
        flash(request, f"Order cancelled; {format_amount(result.refunded, ctx.currency)} returned to the wallet.")
    return see_other(f"/orders/{order_id}")


@post("/orders/{order_id:str}/refund", opt={"role": "admin"})
async def refund(request: Request[Any, Any, Any], order_id: OrderIdPath) -> Template | Redirect:
    ctx = ctx_of(request)
    form = dict(await request.form())
    try:
        key = idempotency_key(request.user, form)
        reason = reason_field(form)
        async with ctx.db.read() as conn:
            before = await queries.order_detail(conn, order_id)
        if before is None:
            raise OrderNotFound(f"no order {order_id}")
        order = await ctx.core.orders.staff_refund(order_id, actor=request.user.actor, reason=reason,
                                                   idempotency_key=key)
    except FormError as exc:
        return await order_page(request, order_id, status=exc.status, error=exc.message)
    except OrderNotFound:
        raise
    except ShopError as exc:
        return await order_page(request, order_id, status=error_status(exc), error=error_message(exc, ctx.currency))
    if before["status"] == "refunded":
        flash(request, "The order was already refunded; nothing more was done.")
    else:
        flash(request, f"Refunded {format_amount(order.price, ctx.currency)} to the user's wallet.")
    return see_other(f"/orders/{order_id}")


HANDLERS = [orders_page, order_detail, cancel, refund]
