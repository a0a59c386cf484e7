"""CSRF protection on every form, with two deliberate exceptions.

Litestar's CSRF middleware (double-submit cookie, HMAC-signed token) guards every unsafe
request. Skipped only where a browser cannot be tricked into sending the credential:
``/api`` requests that carry ``Authorization: Bearer`` (browsers never attach that header on
their own; an /api request riding on a session cookie is still checked, via the
``X-CSRFToken`` header), and the provider webhook, which proves itself with an HMAC signature.
"""

from __future__ import annotations

from litestar.config.csrf import CSRFConfig
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import Receive, Scope, Send

CSRF_COOKIE = "ns_csrf"
WEBHOOK_PREFIX = "/webhooks/"


class AdminCSRFMiddleware(CSRFMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            if path.startswith(WEBHOOK_PREFIX) or (
                (path == "/api" or path.startswith("/api/")) and _has_bearer(scope)
            ):
                await self.app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _has_bearer(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return value[:7].lower() == b"bearer "
    return False


def csrf_middleware(secret: str, *, secure: bool = False) -> DefineMiddleware:
    config = CSRFConfig(
        secret=secret, cookie_name=CSRF_COOKIE, cookie_secure=secure, cookie_httponly=True,
        cookie_samesite="lax", header_name="x-csrftoken",
    )
    return DefineMiddleware(AdminCSRFMiddleware, config=config)
