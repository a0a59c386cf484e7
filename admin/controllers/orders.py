"""Orders: filtered, keyset-paginated list; an order's timeline; force cancel (support) and
refund of a completed order (admin), both through OrderService like the bot's buttons."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template

from admin import queries
from admin.filters import order_filter
from admin.forms import FormError, error_message, error_status, idempotency_key, reason_field
from admin.params import OptQ, OrderIdPath
from admin.render import ctx_of, flash, page, see_other
from core import support
from core.errors import OrderNotFound, ShopError
from core.money import format_amount


@get("/orders", opt={"role": "viewer"})
async def orders_page(
    request: Request[Any, Any, Any],
    status: OptQ = None,
    service: OptQ = None,
    country: OptQ = None,
    provider: OptQ = None,
    user: OptQ = None,
    date_from: OptQ = None,
    date_to: OptQ = None,
    cursor: OptQ = None,
) -> Template:
    ctx = ctx_of(request)
    flt = order_filter(status, service, country, provider, user, date_from, date_to)
    async with ctx.db.read() as conn:
        result = await queries.list_orders(conn, flt, cursor=cursor, limit=50)
        choices: dict[str, Any] = {
            "service_choices": await queries.service_choices(conn),
            "country_choices": await queries.country_choices(conn),
            "provider_choices": sorted(set(await queries.provider_choices(conn)) | set(ctx.providers)),
        }
    return page(
        request,
        "orders.html",
        orders=result.rows,
        next_cursor=result.next_cursor,
        flt=flt,
        params=flt.as_params(),
        statuses=queries.ORDER_STATUSES,
        show_user=True,
        first_page=not cursor,
        **choices,
    )


async def order_page(
    request: Request[Any, Any, Any], order_id: str, *, status: int = 200, error: str | None = None
) -> Template:
    ctx = ctx_of(request)
    async with ctx.db.read() as conn:
        order = await queries.order_detail(conn, order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id}")
        names = await queries.account_names(
            conn,
            [t["debit_account_id"] for t in order["transfers"]]
            + [t["credit_account_id"] for t in order["transfers"]],
        )
    return page(
        request, "order.html", status=status, error=error, o=order, transfers=order["transfers"], names=names
    )


@get("/orders/{order_id:str}", opt={"role": "viewer"})
async def order_detail(request: Request[Any, Any, Any], order_id: OrderIdPath) -> Template:
    return await order_page(request, order_id[:64])


@post("/orders/{order_id:str}/cancel", opt={"role": "support"})
async def cancel(request: Request[Any, Any, Any], order_id: OrderIdPath) -> Template | Redirect:
    ctx = ctx_of(request)
    form = dict(await request.form())
    try:
        idempotency_key(request.user, form)
        reason = reason_field(form)
        result = await support.cancel_order(
            ctx.db, ctx.core.orders, order_id, actor=request.user.actor, reason=reason, now=ctx.clock.now()
        )
    except FormError as exc:
        return await order_page(request, order_id, status=exc.status, error=exc.message)
    except OrderNotFound:
        raise
    except ShopError as exc:
        return await order_page(
            request, order_id, status=error_status(exc), error=error_message(exc, ctx.currency)
        )
    if result.completed_instead:
        flash(request, "A code had already arrived: the order completed and nothing was refunded.", "error")
    elif result.already:
        flash(request, "The order was already cancelled; nothing more was refunded.")
    else:
        flash(
            request,
            f"Order cancelled; {format_amount(result.refunded, ctx.currency)} returned to the wallet.",
        )
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
        order = await ctx.core.orders.staff_refund(
            order_id, actor=request.user.actor, reason=reason, idempotency_key=key
        )
    except FormError as exc:
        return await order_page(request, order_id, status=exc.status, error=exc.message)
    except OrderNotFound:
        raise
    except ShopError as exc:
        return await order_page(
            request, order_id, status=error_status(exc), error=error_message(exc, ctx.currency)
        )
    if before["status"] == "refunded":
        flash(request, "The order was already refunded; nothing more was done.")
    else:
        flash(request, f"Refunded {format_amount(order.price, ctx.currency)} to the user's wallet.")
    return see_other(f"/orders/{order_id}")


HANDLERS = [orders_page, order_detail, cancel, refund]
