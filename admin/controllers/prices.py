"""Prices: the markup per service and per country (admin changes them, everyone can look).

Each change goes through core.price_overrides with its audit row in the same transaction;
a form stays on this page with what was typed when it is refused."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
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
    reason_field,
)
from admin.params import NamePath
from admin.render import ctx_of, flash, page, see_other
from core import price_overrides
from core.errors import ShopError
from core.money import MoneyError, parse_positive_amount


async def prices_view(
    request: Request[Any, Any, Any],
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
    failed: str | None = None,
) -> Template:
    ctx = ctx_of(request)
    async with ctx.db.read() as conn:
        services = await queries.catalogue(conn)
        countries = await queries.country_prices(conn)
    return page(
        request,
        "prices.html",
        status=status,
        error=error,
        form=form or {},
        failed=failed,
        services=services,
        countries=countries,
        markup=ctx.core.settings.MARKUP_PERCENT,
    )


@get("/prices", opt={"role": "viewer"})
async def prices_page(request: Request[Any, Any, Any]) -> Template:
    return await prices_view(request)


def _markup(value: str) -> int:
    text = (value or "").strip().rstrip("%").strip()
    if not text.isascii() or not text.isdigit():
        raise FormError("enter the markup as a whole number of percent, like 25")
    return int(text)


async def _act(request: Request[Any, Any, Any], failed: str, action: Any) -> Template | Redirect:
    ctx = ctx_of(request)
    form = {k: v for k, v in dict(await request.form()).items() if isinstance(v, str)}
    try:
        async with acting_once(ctx.nonces, idempotency_key(request.user, form)):
            text = await action(ctx, request.user, form, reason_field(form))
    except AlreadySubmitted:
        flash(request, ALREADY_SUBMITTED)
        return see_other("/prices")
    except FormError as exc:
        return await prices_view(request, status=exc.status, error=exc.message, form=form, failed=failed)
    except ShopError as exc:
        return await prices_view(
            request,
            status=error_status(exc),
            error=error_message(exc, ctx.currency),
            form=form,
            failed=failed,
        )
    flash(request, text)
    return see_other("/prices")


@post("/prices/services/{service:str}", opt={"role": "admin"})
async def set_service_price(request: Request[Any, Any, Any], service: NamePath) -> Template | Redirect:
    async def go(ctx: Any, me: Any, form: dict[str, str], reason: str) -> str:
        mode, value, now = form.get("mode"), form.get("value") or "", ctx.clock.now()
        if mode == "clear":
            cleared = await price_overrides.remove_price_override(
                ctx.db, service, actor=me.actor, reason=reason, now=now
            )
            return f"{service}: back to the default markup." if cleared else f"{service} had no override."
        if mode == "markup":
            await price_overrides.override_price(
                ctx.db, service, markup_percent=_markup(value), actor=me.actor, reason=reason, now=now
            )
            return f"{service}: markup set."
        if mode == "fixed":
            try:
                price = parse_positive_amount(value.strip(), ctx.currency)
            except MoneyError as exc:
                raise FormError(str(exc)) from None
            await price_overrides.override_price(
                ctx.db, service, fixed_price=price, actor=me.actor, reason=reason, now=now
            )
            return f"{service}: fixed price set."
        raise FormError("choose markup, fixed price or clear")

    return await _act(request, f"service:{service}", go)


@post("/prices/countries/{country:str}", opt={"role": "admin"})
async def set_country_price(request: Request[Any, Any, Any], country: NamePath) -> Template | Redirect:
    async def go(ctx: Any, me: Any, form: dict[str, str], reason: str) -> str:
        now = ctx.clock.now()
        if form.get("mode") == "clear":
            cleared = await price_overrides.remove_country_price_override(
                ctx.db, country, actor=me.actor, reason=reason, now=now
            )
            return f"{country}: back to the default markup." if cleared else f"{country} had no markup."
        markup = await price_overrides.override_country_price(
            ctx.db,
            country,
            markup_percent=_markup(form.get("value") or ""),
            actor=me.actor,
            reason=reason,
            now=now,
        )
        return f"{country.upper()}: markup {markup}% set."

    return await _act(request, f"country:{country.upper()}", go)


HANDLERS = [prices_page, set_service_price, set_country_price]
