"""Providers: breaker state, upstream balance, offers; the delivery statistics routing ranks
offers by (core.routing); the catalogue with per-service price overrides (admin), set through
core.price_overrides with an audit row in the same transaction."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template

from admin import queries
from admin.context import breaker_states
from admin.forms import (
    ALREADY_SUBMITTED,
    AlreadySubmitted,
    FormError,
    acting_once,
    error_message,
    error_status,
    idempotency_key,
    reason_field,
)
from admin.params import NamePath
from admin.render import ctx_of, flash, page, see_other
from core import price_overrides, provider_balances, routing
from core.errors import ShopError
from core.money import MoneyError, parse_positive_amount

DELIVERY_ROWS = 200  # the page shows the busiest combinations; the CLI lists them all


async def providers_view(
    request: Request[Any, Any, Any], *, status: int = 200, error: str | None = None
) -> Template:
    ctx = ctx_of(request)
    async with ctx.db.read() as conn:
        balances = await queries.latest_provider_balances(conn)
        offer_counts = await queries.provider_offer_counts(conn)
        services = await queries.catalogue(conn)
    names = sorted(set(ctx.providers) | set(balances) | set(offer_counts))
    instances = {i.name: i for i in ctx.core.settings.provider_instances}
    alert_below = provider_balances.thresholds(ctx.core.settings)
    low = {
        name: provider_balances.is_low(
            int(bal["amount"]), str(bal["currency"]), alert_below.get(name), instances[name].currency
        )
        for name, bal in balances.items()
        if name in alert_below
    }
    settings = ctx.core.settings
    delivery = await routing.status_rows(ctx.db, settings, ctx.clock.now(), limit=DELIVERY_ROWS + 1)
    prior = settings.ROUTING_PRIOR_SUCCESSES / (
        settings.ROUTING_PRIOR_SUCCESSES + settings.ROUTING_PRIOR_FAILURES
    )
    return page(
        request,
        "providers.html",
        delivery=delivery[:DELIVERY_ROWS],
        delivery_more=len(delivery) > DELIVERY_ROWS,
        routing={"prior_pct": round(100 * prior), "floor_pct": round(100 * settings.ROUTING_SUCCESS_FLOOR)},
        status=status,
        error=error,
        names=names,
        breakers=await breaker_states(ctx.board),
        balances=balances,
        alert_below={n: (t, instances[n].currency) for n, t in alert_below.items()},
        low=low,
        offer_counts=offer_counts,
        services=services,
        markup=ctx.core.settings.MARKUP_PERCENT,
    )


@get("/providers", opt={"role": "viewer"})
async def providers_page(request: Request[Any, Any, Any]) -> Template:
    return await providers_view(request)


async def apply_price(ctx: Any, me: Any, service: str, mode: str, value: str, reason: str) -> str:
    """Set or clear a service's price override; returns a sentence for the flash message."""
    now = ctx.clock.now()
    if mode == "clear":
        cleared = await price_overrides.remove_price_override(
            ctx.db, service, actor=me.actor, reason=reason, now=now
        )
        return f"{service}: back to the default markup." if cleared else f"{service} had no override."
    if mode == "markup":
        try:
            percent = int(value.strip().rstrip("%"))
        except ValueError:
            raise FormError("the markup is a whole number of percent, like 25") from None
        await price_overrides.override_price(
            ctx.db, service, markup_percent=percent, actor=me.actor, reason=reason, now=now
        )
        return f"{service}: markup {percent}%."
    if mode == "fixed":
        try:
            price = parse_positive_amount(value, ctx.currency)
        except MoneyError as exc:
            raise FormError(str(exc)) from None
        await price_overrides.override_price(
            ctx.db, service, fixed_price=price, actor=me.actor, reason=reason, now=now
        )
        return f"{service}: fixed price set."
    raise FormError("choose markup, fixed price or clear")


@post("/providers/prices/{service:str}", opt={"role": "admin"})
async def set_price(request: Request[Any, Any, Any], service: NamePath) -> Template | Redirect:
    ctx = ctx_of(request)
    form = dict(await request.form())
    try:
        key = idempotency_key(request.user, form)
        reason = reason_field(form)
        async with acting_once(ctx.nonces, key):
            text = await apply_price(
                ctx,
                request.user,
                service[:32],
                (form.get("mode") or "").strip(),
                form.get("value") or "",
                reason,
            )
    except AlreadySubmitted:
        flash(request, ALREADY_SUBMITTED)
        return see_other("/providers")
    except FormError as exc:
        return await providers_view(request, status=exc.status, error=exc.message)
    except ShopError as exc:
        return await providers_view(request, status=error_status(exc), error=error_message(exc, ctx.currency))
    flash(request, text)
    return see_other("/providers")


HANDLERS = [providers_page, set_price]
