"""Crypto Pay invoices: every top-up invoice with its status, amount and buyer (admin only,
since it shows who paid how much and with which coin)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from admin.params import OptQ
from admin.render import ctx_of, page
from core import cryptopay


@get("/crypto", opt={"role": "admin"})
async def crypto_page(request: Request[Any, Any, Any], status: OptQ = None) -> Template:
    ctx = ctx_of(request)
    rows = await cryptopay.list_invoices(ctx.db, status=status or None, limit=200)
    return page(
        request,
        "crypto.html",
        rows=rows,
        chosen=status or "",
        statuses=cryptopay.STATUSES,
        enabled=getattr(ctx.core, "cryptopay", None) is not None,
    )


HANDLERS = [crypto_page]
