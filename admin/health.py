"""Liveness and readiness for load balancers and orchestrators (public, cheap)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Response
from sqlalchemy import text

PUBLIC = {"public": True, "exclude_from_auth": True}


@get("/healthz", opt=PUBLIC, include_in_schema=False, media_type="text/plain")
async def healthz() -> str:
    return "ok"


@get("/readyz", opt=PUBLIC, include_in_schema=False, media_type="text/plain")
async def readyz(request: Request[Any, Any, Any]) -> Response[str]:
    ctx = request.app.state.admin
    try:
        async with ctx.db.read() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return Response(
            f"database unreachable: {type(exc).__name__}", status_code=503, media_type="text/plain"
        )
    return Response("ready", media_type="text/plain")
