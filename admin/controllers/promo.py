"""Promo codes, referral earnings and Stars refunds: read by any staff, changed by admins.

Every change is a POST with the CSRF token and a one-time form nonce (``acting_once``), so a
double click or a resubmitted page acts once; the services audit what they do."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template

from admin.forms import (
    ALREADY_SUBMITTED,
    AlreadySubmitted,
    FormError,
    acting_once,
    amount_field,
    day_start,
    error_message,
    error_status,
    idempotency_key,
    parse_day,
    reason_field,
)
from admin.params import NamePath
from admin.render import ctx_of, flash, page, see_other
from core import referrals
from core.errors import ShopError
from core.money import format_amount
from core.promo import PromoCodeExists, Promos
from core.star_refunds import StarRefunds, StarRefundUnavailable, Status


@get("/promo", opt={"role": "viewer"})
async def promo_page(request: Request[Any, Any, Any]) -> Template:
    return await _promo_page(request)


async def _promo_page(
    request: Request[Any, Any, Any],
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> Template:
    ctx = ctx_of(request)
    return page(
        request,
        "promo.html",
        status=status,
        error=error,
        codes=await Promos(ctx.db, ctx.clock).codes(),  # a read: no port or settings needed
        earnings=await referrals.earnings(ctx.db, limit=50),
        settings=ctx.core.settings,
        form=form or {},
    )


def _uses(form: dict[str, str]) -> int:
    text = (form.get("uses") or "").strip()
    if not text.isdigit() or int(text) <= 0:
        raise FormError("uses: enter a whole number greater than zero")
    return int(text)


@post("/promo", opt={"role": "admin"})
async def create_code(request: Request[Any, Any, Any]) -> Template | Redirect:
    ctx = ctx_of(request)
    form = dict(await request.form())
    try:
        key = idempotency_key(request.user, form)
        amount = amount_field(form, ctx.currency)
        uses = _uses(form)
        budget = amount_field(form, ctx.currency, "budget") if (form.get("budget") or "").strip() else None
        day = parse_day(form.get("expires"), field="expires")
        async with acting_once(ctx.nonces, key):
            code = await ctx.core.promos.create(
                form.get("code") or "",
                amount=amount,
                max_uses=uses,
                budget=budget,
                expires_at=day_start(day) if day else None,
                actor=request.user.actor,
            )
    except AlreadySubmitted:
        flash(request, ALREADY_SUBMITTED)
        return see_other("/promo")
    except FormError as exc:
        return await _promo_page(request, status=exc.status, error=exc.message, form=form)
    except PromoCodeExists as exc:
        return await _promo_page(request, status=409, error=str(exc), form=form)
    except ShopError as exc:
        return await _promo_page(
            request, status=error_status(exc), error=error_message(exc, ctx.currency), form=form
        )
    flash(request, f"Created {code.code}: {format_amount(code.amount, ctx.currency)} × {code.max_uses}.")
    return see_other("/promo")


@post("/promo/{code:str}/disable", opt={"role": "admin"})
async def disable_code(request: Request[Any, Any, Any], code: NamePath) -> Template | Redirect:
    ctx = ctx_of(request)
    form = dict(await request.form())
    try:
        key = idempotency_key(request.user, form)
        async with acting_once(ctx.nonces, key):
            changed = await ctx.core.promos.disable(code, actor=request.user.actor, reason="dashboard")
    except AlreadySubmitted:
        flash(request, ALREADY_SUBMITTED)
        return see_other("/promo")
    except FormError as exc:
        return await _promo_page(request, status=exc.status, error=exc.message)
    except ShopError as exc:
        return await _promo_page(request, status=error_status(exc), error=error_message(exc, ctx.currency))
    flash(request, f"{code.upper()} disabled." if changed else f"{code.upper()} was already disabled.")
    return see_other("/promo")


@get("/stars-refunds", opt={"role": "viewer"})
async def refunds_page(request: Request[Any, Any, Any]) -> Template:
    return await _refunds_page(request)


async def _refunds_page(
    request: Request[Any, Any, Any],
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> Template:
    ctx = ctx_of(request)
    return page(
        request,
        "stars_refunds.html",
        status=status,
        error=error,
        refunds=await StarRefunds(ctx.db, ctx.clock, None).recent(),  # a read: no Bot API
        form=form or {},
    )


@post("/stars-refunds", opt={"role": "admin"})
async def refund_stars(request: Request[Any, Any, Any]) -> Template | Redirect:
    ctx = ctx_of(request)
    form = dict(await request.form())
    try:
        key = idempotency_key(request.user, form)
        reason = reason_field(form)
        charge = (form.get("charge_id") or "").strip()
        if not charge:
            raise FormError("enter the payment's charge id (telegram_payment_charge_id)")
        async with acting_once(ctx.nonces, key):
            done = await ctx.core.star_refunds.refund(charge, reason=reason, actor=request.user.actor)
    except AlreadySubmitted:
        flash(request, ALREADY_SUBMITTED)
        return see_other("/stars-refunds")
    except FormError as exc:
        return await _refunds_page(request, status=exc.status, error=exc.message, form=form)
    except StarRefundUnavailable as exc:
        return await _refunds_page(
            request,
            status=503,
            error=f"{exc}. The money stays held; submit the refund again to finish it.",
            form=form,
        )
    except ShopError as exc:
        return await _refunds_page(
            request, status=error_status(exc), error=error_message(exc, ctx.currency), form=form
        )
    amount = format_amount(done.amount, ctx.currency)
    if done.status == Status.REFUNDED:
        again = "" if done.created else " (it was refunded before; nothing more was done)"
        flash(request, f"Refunded the Stars of {done.charge_id}; {amount} taken from the wallet{again}.")
    else:
        flash(
            request, f"Telegram refused the refund ({done.error}); the {amount} hold was released.", "error"
        )
    return see_other("/stars-refunds")


HANDLERS = [promo_page, create_code, disable_code, refunds_page, refund_stars]
