"""The audit log: every staff action with who, when, what and why."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from admin import queries
from admin.params import OptQ
from admin.render import ctx_of, page


@get("/audit", opt={"role": "viewer"})
async def audit_page(
    request: Request[Any, Any, Any],
    actor: OptQ = None,
    action: OptQ = None,
    target: OptQ = None,
    cursor: OptQ = None,
) -> Template:
    ctx = ctx_of(request)
    flt = queries.AuditFilter(actor=(actor or None), action=(action or None), target=(target or None))
    async with ctx.db.read() as conn:
        result = await queries.list_audit(conn, flt, cursor=cursor, limit=100)
        people = await queries.users_by_ids(
            conn, [a["target_id"] for a in result.rows if a["target_type"] == "user" and a["target_id"]]
        )
        action_choices, actor_choices = await queries.audit_choices(conn)
    return page(
        request,
        "audit.html",
        action_choices=action_choices,
        actor_choices=actor_choices,
        rows=result.rows,
        next_cursor=result.next_cursor,
        flt=flt,
        people=people,
        params=flt.as_params(),
        first_page=not cursor,
    )


HANDLERS = [audit_page]
