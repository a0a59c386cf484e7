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
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
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
        staff_id = session.get("staff_id") if isinstance(session, dict) else None
        if staff_id is not None:
            member = await ctx.staff.get(int(staff_id))
            if (member is not None and not member.disabled
                    and session.get("epoch") == member.password_epoch):
                return AuthenticationResult(user=member, auth="session")
            connection.clear_session()  # disabled, deleted or password changed: log out
        raise NotAuthorizedException("log in first")


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
