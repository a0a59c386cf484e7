"""Security headers on every dashboard response.

- ``Cache-Control: no-store`` on everything but ``/static``: pages show balances, audit
  reasons and, once, a new API token; no browser or proxy cache may keep them.
- Never framed (``X-Frame-Options: DENY``, CSP ``frame-ancestors 'none'``): no clickjacking of
  the credit and refund buttons.
- ``nosniff`` and ``Referrer-Policy: same-origin``: filter values in URLs (user ids, order ids)
  do not leak to other sites.
- A CSP that allows only the dashboard's own stylesheet and no script at all: the templates have
  no inline script or style, so an injected one would not run.

The interactive API docs page loads Swagger UI from a CDN, so it is served only when
``ADMIN_API_DOCS`` is on (development), and only that page gets a CSP allowing the CDN.
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PREFIX = "/api/schema/"
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
    "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)
STATIC_PREFIX = "/static/"


def headers_for(path: str) -> dict[str, str]:
    headers = {
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Content-Security-Policy": DOCS_CSP if path.startswith(DOCS_PREFIX) else CSP,
    }
    if not path.startswith(STATIC_PREFIX):
        headers["Cache-Control"] = "no-store"
    return headers


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope.get("path", ""))

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in extra.items():
                    headers[name] = value  # replaces any value a handler set
            await send(message)

        await self.app(scope, receive, wrapped)
