"""Log in and out. The session id is replaced at login (no fixation) and the session holds
only the staff id and a digest of the password hash, so a password change logs everyone out."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template

from admin.auth import session_member
from admin.params import OptQ
from admin.render import ctx_of, page, see_other
from admin.sessions import rotate_session

PUBLIC = {"public": True, "exclude_from_auth": True}


def _safe_next(target: str | None) -> str:
    target = (target or "").strip()
    if not target.startswith("/") or target.startswith(("//", "/login")) or "\\" in target:
        return "/"
    return target


async def _logged_in(request: Request[Any, Any, Any]) -> bool:
    session = request.scope.get("session")
    return isinstance(session, dict) and await session_member(ctx_of(request), session) is not None


@get("/login", opt=PUBLIC, name="login")
async def login_form(request: Request[Any, Any, Any], next: OptQ = None) -> Template | Redirect:
    if await _logged_in(request):
        return see_other(_safe_next(next))
    return page(request, "login.html", next=_safe_next(next))


@post("/login", opt=PUBLIC)
async def login(request: Request[Any, Any, Any]) -> Template | Redirect:
    ctx = ctx_of(request)
    form = await request.form()
    username = (form.get("username") or "").strip()[:64]
    password = form.get("password") or ""
    target = _safe_next(form.get("next"))
    ip = request.client.host if request.client else "unknown"
    attempt = await ctx.throttle.reserve(username, ip)  # counted before the slow hash runs
    if attempt.wait:
        minutes = max(1, (attempt.wait + 59) // 60)
        return page(
            request,
            "login.html",
            status=429,
            next=target,
            username=username,
            error=f"Too many failed logins. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
        )
    member = await ctx.staff.authenticate(username, password) if username and password else None
    if member is None:
        return page(
            request,
            "login.html",
            status=401,
            next=target,
            username=username,
            error="Wrong username or password.",
        )
    await ctx.throttle.success(attempt)
    request.set_session(
        {"staff_id": member.id, "epoch": member.password_epoch, "login_at": ctx.clock.now().timestamp()}
    )
    rotate_session(request)
    return see_other(target)


@post("/logout", opt={"role": "viewer"})
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    request.clear_session()
    return see_other("/login")
