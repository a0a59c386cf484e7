"""Users: search, a user's wallet, transfers and orders; credit/debit (support), block (admin)."""

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
    amount_field,
    error_message,
    error_status,
    idempotency_key,
    reason_field,
)
from admin.params import OptQ, TelegramIdPath
from admin.render import ctx_of, flash, page, see_other
from core import users
from core.errors import ShopError, UserNotFound
from core.staff import adjust_wallet
from core.users import find_user


@get("/users", opt={"role": "viewer"})
async def users_page(request: Request[Any, Any, Any], q: OptQ = None) -> Template:
    ctx = ctx_of(request)
    async with ctx.db.read() as conn:
        rows = await queries.search_users(conn, (q or "")[:64], limit=50)
    return page(request, "users.html", rows=rows, q=q or "")


async def user_page(
    request: Request[Any, Any, Any],
    telegram_id: int,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
    failed: str | None = None,
) -> Template:
    """The user's page; after bad input, ``failed`` names the form shown again with ``form``."""
    ctx = ctx_of(request)
    async with ctx.db.read() as conn:
        user = await queries.user_by_telegram_id(conn, telegram_id)
        if user is None:
            raise UserNotFound(f"no user with Telegram id {telegram_id}")
        page_ = await queries.list_transfers(conn, queries.TransferFilter(user=str(telegram_id)), limit=30)
        names = await queries.account_names(
            conn, [t["debit_account_id"] for t in page_.rows] + [t["credit_account_id"] for t in page_.rows]
        )
        user_orders = await queries.user_orders(conn, user["id"], limit=30)
    return page(
        request,
        "user.html",
        status=status,
        error=error,
        user=user,
        transfers=page_.rows,
        more_transfers=page_.next_cursor is not None,
        names=names,
        orders=user_orders,
        form=form or {},
        failed=failed,
    )


@get("/users/{telegram_id:int}", opt={"role": "viewer"})
async def user_detail(request: Request[Any, Any, Any], telegram_id: TelegramIdPath) -> Template:
    return await user_page(request, telegram_id)


async def _adjust(
    request: Request[Any, Any, Any], telegram_id: TelegramIdPath, direction: str
) -> Template | Redirect:
    ctx = ctx_of(request)
    me = request.user
    form = dict(await request.form())
    try:
        key = idempotency_key(me, form)
        amount = amount_field(form, ctx.currency)
        reason = reason_field(form)
        async with ctx.db.read() as conn:
            if await find_user(conn, telegram_id) is None:
                raise UserNotFound(f"no user with Telegram id {telegram_id}")
        change = await adjust_wallet(
            ctx.core.wallets,
            me,
            direction,
            telegram_id,
            amount,
            reason=reason,
            idempotency_key=key,
            support_credit_limit=ctx.core.settings.SUPPORT_CREDIT_LIMIT,
        )
    except FormError as exc:
        return await user_page(
            request, telegram_id, status=exc.status, error=exc.message, form=form, failed=direction
        )
    except UserNotFound:
        raise
    except ShopError as exc:
        return await user_page(
            request,
            telegram_id,
            status=error_status(exc),
            error=error_message(exc, ctx.currency),
            form=form,
            failed=direction,
        )
    from core.money import format_amount

    verb = "Credited" if direction == "credit" else "Debited"
    note = "" if change.created else " (this form was already submitted; nothing more was done)"
    flash(
        request,
        f"{verb} {format_amount(amount, ctx.currency)}; balance now "
        f"{format_amount(change.wallet.balance, ctx.currency)}{note}",
    )
    return see_other(f"/users/{telegram_id}")


@post("/users/{telegram_id:int}/credit", opt={"role": "support"})
async def credit(request: Request[Any, Any, Any], telegram_id: TelegramIdPath) -> Template | Redirect:
    return await _adjust(request, telegram_id, "credit")


@post("/users/{telegram_id:int}/debit", opt={"role": "support"})
async def debit(request: Request[Any, Any, Any], telegram_id: TelegramIdPath) -> Template | Redirect:
    return await _adjust(request, telegram_id, "debit")


@post("/users/{telegram_id:int}/block", opt={"role": "admin"})
async def block(request: Request[Any, Any, Any], telegram_id: TelegramIdPath) -> Template | Redirect:
    ctx = ctx_of(request)
    form = dict(await request.form())
    try:
        key = idempotency_key(request.user, form)
        reason = reason_field(form)
        value = form.get("blocked")
        if value not in ("1", "0"):
            raise FormError("say whether to block (1) or unblock (0)")
        async with acting_once(ctx.nonces, key):
            changed = await users.change_blocked(
                ctx.db,
                telegram_id,
                value == "1",
                actor=request.user.actor,
                reason=reason,
                now=ctx.clock.now(),
            )
    except AlreadySubmitted:
        flash(request, ALREADY_SUBMITTED)
        return see_other(f"/users/{telegram_id}")
    except FormError as exc:
        return await user_page(
            request, telegram_id, status=exc.status, error=exc.message, form=form, failed="block"
        )
    state = "blocked" if value == "1" else "unblocked"
    flash(request, f"User {telegram_id} {state}." if changed else f"User {telegram_id} was already {state}.")
    return see_other(f"/users/{telegram_id}")


HANDLERS = [users_page, user_detail, credit, debit, block]
