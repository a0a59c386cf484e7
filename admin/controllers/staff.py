"""Staff management (admin): add, change role, disable, reset password, API tokens."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template

from admin.forms import (
    ALREADY_SUBMITTED,
    AlreadySubmitted,
    FormError,
    acting_once,
    error_message,
    error_status,
    idempotency_key,
)
from admin.params import IntIdPath, NamePath
from admin.render import ctx_of, flash, page, see_other
from core.errors import ShopError
from core.staff import ROLES


async def staff_view(
    request: Request[Any, Any, Any],
    *,
    status: int = 200,
    error: str | None = None,
    new_token: str | None = None,
    form: dict[str, str] | None = None,
    failed: str | None = None,
) -> Template:
    ctx = ctx_of(request)
    members = await ctx.staff.members()
    tokens = {m.id: await ctx.staff.tokens(m.id) for m in members}
    return page(
        request,
        "staff.html",
        status=status,
        error=error,
        members=members,
        tokens=tokens,
        roles=ROLES,
        new_token=new_token,
        failed=failed,
        form={k: v for k, v in (form or {}).items() if k != "password"},
    )


@get("/staff", opt={"role": "admin"})
async def staff_page(request: Request[Any, Any, Any]) -> Template:
    return await staff_view(request)


async def _act(request: Request[Any, Any, Any], action: Any, name: str | None = None) -> Template | Redirect:
    ctx = ctx_of(request)
    form = dict(await request.form())
    try:
        async with acting_once(ctx.nonces, idempotency_key(request.user, form)):
            result = await action(ctx, request.user, form)
    except AlreadySubmitted:
        flash(request, ALREADY_SUBMITTED)
        return see_other("/staff")
    except FormError as exc:
        return await staff_view(request, status=exc.status, error=exc.message, form=form, failed=name)
    except ShopError as exc:
        return await staff_view(
            request, status=error_status(exc), error=error_message(exc, ctx.currency), form=form, failed=name
        )
    if isinstance(result, Template):
        return result
    flash(request, result)
    return see_other("/staff")


@post("/staff", opt={"role": "admin"})
async def add_staff(request: Request[Any, Any, Any]) -> Template | Redirect:
    async def go(ctx: Any, me: Any, form: dict[str, str]) -> str:
        member = await ctx.staff.create(
            form.get("username", ""), form.get("role", ""), form.get("password", ""), actor=me.actor
        )
        return f"Added {member.username} as {member.role}."

    return await _act(request, go, "add")


@post("/staff/{username:str}/role", opt={"role": "admin"})
async def set_role(request: Request[Any, Any, Any], username: NamePath) -> Template | Redirect:
    async def go(ctx: Any, me: Any, form: dict[str, str]) -> str:
        member = await ctx.staff.set_role(username, form.get("role", ""), actor=me.actor, acting_id=me.id)
        return f"{member.username} is now {member.role}."

    return await _act(request, go)


@post("/staff/{username:str}/disabled", opt={"role": "admin"})
async def set_disabled(request: Request[Any, Any, Any], username: NamePath) -> Template | Redirect:
    async def go(ctx: Any, me: Any, form: dict[str, str]) -> str:
        value = form.get("disabled")
        if value not in ("1", "0"):
            raise FormError("say whether to disable (1) or enable (0)")
        member = await ctx.staff.set_disabled(username, value == "1", actor=me.actor, acting_id=me.id)
        return f"{member.username} is now {'disabled' if member.disabled else 'enabled'}."

    return await _act(request, go)


@post("/staff/{username:str}/password", opt={"role": "admin"})
async def set_password(request: Request[Any, Any, Any], username: NamePath) -> Template | Redirect:
    async def go(ctx: Any, me: Any, form: dict[str, str]) -> str:
        member = await ctx.staff.set_password(username, form.get("password", ""), actor=me.actor)
        return f"Password changed for {member.username}; their sessions have ended."

    return await _act(request, go)


@post("/staff/{username:str}/tokens", opt={"role": "admin"})
async def create_token(request: Request[Any, Any, Any], username: NamePath) -> Template | Redirect:
    async def go(ctx: Any, me: Any, form: dict[str, str]) -> Template:
        name = (form.get("name") or "").strip()[:64] or None
        token = await ctx.staff.create_token(username, name, actor=me.actor)
        # Shown once, in this response only; never stored in the session or a redirect URL.
        return await staff_view(request, new_token=token)

    return await _act(request, go)


@post("/staff/tokens/{token_id:int}/revoke", opt={"role": "admin"})
async def revoke_token(request: Request[Any, Any, Any], token_id: IntIdPath) -> Template | Redirect:
    async def go(ctx: Any, me: Any, form: dict[str, str]) -> str:
        await ctx.staff.revoke_token(token_id, actor=me.actor)
        return f"API token {token_id} revoked."

    return await _act(request, go)


HANDLERS = [staff_page, add_staff, set_role, set_disabled, set_password, create_token, revoke_token]
