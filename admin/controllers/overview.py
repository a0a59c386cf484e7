"""The overview: today's orders and money, what is held, providers, the books' last check."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from admin import queries
from admin.context import breaker_states
from admin.render import ctx_of, page


@get("/", opt={"role": "viewer"}, name="overview")
async def overview_page(request: Request[Any, Any, Any]) -> Template:
    ctx = ctx_of(request)
    now = ctx.clock.now()
    async with ctx.db.read() as conn:
        ov = await queries.overview(conn, now)
    return page(
        request,
        "overview.html",
        ov=ov,
        breakers=await breaker_states(ctx.board),
        providers=sorted(set(ctx.providers) | set(ov.provider_balances)),
    )
