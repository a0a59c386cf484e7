"""Broadcasts (admin): write a message, preview it, pick an audience, send it through the
outbox with live progress, pause, resume or cancel. The logic lives in core.broadcasts; this
page checks the HTML as Telegram would before anything is stored."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template

from admin import queries, telegram_html
from admin.forms import FormError, error_message, error_status, idempotency_key
from admin.params import IntIdPath, NamePath
from admin.render import ctx_of, flash, page, see_other
from core import broadcasts
from core.errors import InvalidInput, ShopError

REFRESH_SECONDS = 5


async def _choices(ctx: Any) -> dict[str, Any]:
    async with ctx.db.read() as conn:
        return {
            "services": await queries.service_choices(conn),
            "languages": await queries.language_choices(conn),
            "recent": [(b, await broadcasts.progress(conn, b)) for b in await broadcasts.recent(conn)],
        }


async def broadcasts_view(
    request: Request[Any, Any, Any],
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
    preview: Any = None,
    audience_size: int | None = None,
) -> Template:
    ctx = ctx_of(request)
    return page(
        request,
        "broadcasts.html",
        status=status,
        error=error,
        form=form or {},
        preview=preview,
        audience_size=audience_size,
        audiences=broadcasts.AUDIENCES,
        **await _choices(ctx),
    )


@get("/broadcasts", opt={"role": "admin"})
async def broadcasts_page(request: Request[Any, Any, Any]) -> Template:
    return await broadcasts_view(request)


def _audience(form: dict[str, str]) -> tuple[str, str | None]:
    audience = form.get("audience") or ""
    value = {"service": form.get("service"), "language": form.get("language")}.get(audience)
    return audience, value


@post("/broadcasts", opt={"role": "admin"})
async def send_broadcast(request: Request[Any, Any, Any]) -> Template | Redirect:
    """``action=preview`` shows the message and the audience's size; ``action=send`` starts it."""
    ctx = ctx_of(request)
    form = {k: v for k, v in dict(await request.form()).items() if isinstance(v, str)}
    now = ctx.clock.now()
    try:
        key = idempotency_key(request.user, form)
        text = broadcasts.check_text(form.get("text") or "")
        plain, entities = telegram_html.parse(text)
        if not plain.strip():
            raise FormError("the message has no text once its formatting is taken away")
        audience, value = _audience(form)
        if form.get("action") == "preview":
            async with ctx.db.read() as conn:
                size = await broadcasts.audience_size(conn, audience, value, now)
            return await broadcasts_view(
                request, form=form, preview=telegram_html.preview(plain, entities), audience_size=size
            )
        b, created = await broadcasts.create(
            ctx.db,
            nonce=key,
            text=text,
            audience=audience,
            audience_value=value,
            actor=request.user.actor,
            now=now,
        )
    except FormError as exc:
        return await broadcasts_view(request, status=exc.status, error=exc.message, form=form)
    except ShopError as exc:
        return await broadcasts_view(
            request, status=error_status(exc), error=error_message(exc, ctx.currency), form=form
        )
    if created:
        flash(request, f"Broadcast {b.id} started: it goes to {b.total:,} users, a batch every few seconds.")
    else:
        flash(request, "This form was already sent; here is the broadcast it started.")
    return see_other(f"/broadcasts/{b.id}")


@get("/broadcasts/{broadcast_id:int}", opt={"role": "admin"})
async def broadcast_page(request: Request[Any, Any, Any], broadcast_id: IntIdPath) -> Template:
    return await broadcast_view(request, broadcast_id)


async def broadcast_view(
    request: Request[Any, Any, Any], broadcast_id: int, *, status: int = 200, error: str | None = None
) -> Template:
    ctx = ctx_of(request)
    async with ctx.db.read() as conn:
        b = await broadcasts.get(conn, broadcast_id)
        progress = await broadcasts.progress(conn, b)
    plain, entities = telegram_html.parse(b.text)
    return page(
        request,
        "broadcast.html",
        status=status,
        error=error,
        b=b,
        p=progress,
        preview=telegram_html.preview(plain, entities),
        refresh=REFRESH_SECONDS if b.status == broadcasts.SENDING else None,
    )


@post("/broadcasts/{broadcast_id:int}/{action:str}", opt={"role": "admin"})
async def change_broadcast(
    request: Request[Any, Any, Any], broadcast_id: IntIdPath, action: NamePath
) -> Template | Redirect:
    ctx = ctx_of(request)
    try:
        b = await broadcasts.change(
            ctx.db, broadcast_id, action, actor=request.user.actor, now=ctx.clock.now()
        )
    except InvalidInput as exc:
        return await broadcast_view(request, broadcast_id, status=409, error=str(exc))
    words = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}
    flash(request, f"Broadcast {b.id} {words[action]}.")
    return see_other(f"/broadcasts/{b.id}")


HANDLERS = [broadcasts_page, send_broadcast, broadcast_page, change_broadcast]
