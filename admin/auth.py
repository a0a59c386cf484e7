"""Who is asking: a staff session (browser) or a staff API token (machines).

Every route declares the least role it needs in its ``opt`` (``role="viewer"|"support"|
"admin"``) or says it is public (``public=True``); :func:`role_guard` runs on every route and
refuses a route that declares neither, so forgetting a role fails closed. Unauthenticated page
requests go to /login; API requests get 401 with ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from core.staff import StaffMember

PUBLIC_PATHS = ["^/login$", "^/healthz$", "^/readyz$", "^/static/", "^/webhooks/"]
MACHINE_PREFIXES = ("/api", "/metrics")


def is_machine_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in MACHINE_PREFIXES)


class StaffAuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        ctx = connection.app.state.admin
        header = connection.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthorizedException("use Authorization: Bearer <staff API token>")
            member = await ctx.staff.authenticate_token(token.strip())
            if member is None:
                raise NotAuthorizedException("the API token is not valid")
            return AuthenticationResult(user=member, auth="token")
        session = connection.scope.get("session") or {}
        if isinstance(session, dict) and session.get("staff_id") is not None:
            member = await session_member(ctx, session)
            if member is not None:
                return AuthenticationResult(user=member, auth="session")
            connection.clear_session()  # disabled, deleted, password changed or too old: log out
        raise NotAuthorizedException("log in first")


async def session_member(ctx: Any, session: dict[str, Any]) -> StaffMember | None:
    """The staff member a session still speaks for, or None (the login page uses this too, so
    a session that no longer authenticates is not sent back and forth between the two)."""
    staff_id = session.get("staff_id")
    if not isinstance(staff_id, int):
        return None
    member: StaffMember | None = await ctx.staff.get(staff_id)
    if (
        member is not None
        and not member.disabled
        and session.get("epoch") == member.password_epoch
        and _fresh(ctx, session)
    ):
        return member
    return None


def _fresh(ctx: Any, session: dict[str, Any]) -> bool:
    """True while the session is younger than its absolute limit.

    Sessions slide (each request renews the idle timeout), so without this a session kept
    busy would never end. The limit counts from login, on the injected clock, and is checked
    here — not in the store — so memory and Redis sessions end alike. A session without a
    login time predates the limit and is ended.
    """
    login_at = session.get("login_at")
    if not isinstance(login_at, (int, float)):
        return False
    age = ctx.clock.now().timestamp() - login_at
    return bool(0 <= age < ctx.session_max_age)


def role_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if handler.opt.get("public"):
        return
    required = handler.opt.get("role")
    if required is None:
        raise PermissionDeniedException("this route declares no role")  # fail closed
    user = connection.scope.get("user")
    if not isinstance(user, StaffMember):
        raise NotAuthorizedException("log in first")
    if not user.allows(required):
        raise PermissionDeniedException(f"this needs the {required} role; you are {user.role}")
