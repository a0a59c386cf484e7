"""Reconciliation runs and their findings; "run now" (admin) when core offers a reconciler."""

from __future__ import annotations

import inspect
from typing import Any

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
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
from core.errors import ShopError


async def runs_view(
    request: Request[Any, Any, Any], *, status: int = 200, error: str | None = None
) -> Template:
    ctx = ctx_of(request)
    async with ctx.db.read() as conn:
        runs = await queries.reconciliation_list(conn, limit=100)
    return page(
        request,
        "reconciliation.html",
        status=status,
        error=error,
        runs=runs,
        can_run=ctx.reconcile is not None,
    )


@get("/reconciliation", opt={"role": "viewer"})
async def runs_page(request: Request[Any, Any, Any]) -> Template:
    return await runs_view(request)


@get("/reconciliation/{run_id:int}", opt={"role": "viewer"})
async def run_page(request: Request[Any, Any, Any], run_id: IntIdPath) -> Template:
    ctx = ctx_of(request)
    async with ctx.db.read() as conn:
        run = await queries.reconciliation_run(conn, run_id)
    if run is None:
        raise NotFoundException(f"no reconciliation run {run_id}")
    return page(request, "reconciliation_run.html", run=run)


async def run_reconciliation(ctx: Any, me: Any, execute: bool) -> Any:
    if ctx.reconcile is None:
        raise FormError("run now is not available: core has no reconciliation service yet", 503)
    params = inspect.signature(ctx.reconcile).parameters
    kwargs: dict[str, Any] = {}
    for name, value in (
        ("execute", execute),
        ("dry_run", not execute),
        ("actor", me.actor),
        ("clock", ctx.clock),
        ("now", ctx.clock.now()),
        ("db", ctx.db),
        ("providers", ctx.providers),
        ("settings", ctx.core.settings),
        ("core", ctx.core),
    ):
        if name in params:
            kwargs[name] = value
    result = ctx.reconcile(**kwargs)
    return await result if inspect.isawaitable(result) else result


@post("/reconciliation/run", opt={"role": "admin"})
async def run_now(request: Request[Any, Any, Any]) -> Template | Redirect:
    ctx = ctx_of(request)
    form = dict(await request.form())
    try:
        key = idempotency_key(request.user, form)
        mode = form.get("mode")
        if mode not in ("dry_run", "execute"):
            raise FormError("choose a dry run or execute")
        async with acting_once(ctx.nonces, key):
            await run_reconciliation(ctx, request.user, mode == "execute")
    except AlreadySubmitted:
        flash(request, ALREADY_SUBMITTED)
        return see_other("/reconciliation")
    except FormError as exc:
        return await runs_view(request, status=exc.status, error=exc.message)
    except ShopError as exc:
        return await runs_view(request, status=error_status(exc), error=error_message(exc, ctx.currency))
    flash(request, "Reconciliation finished; see the newest run below.")
    return see_other("/reconciliation")


HANDLERS = [runs_page, run_page, run_now]
