"""What a browser may ask of the emulator's HTTP server (and the sandbox built on it).

The server listens on loopback, but every web page open in the same browser can reach
loopback too. Two guards, outermost first:

* ``HostGuard`` refuses a ``Host`` the server was never meant to be reached by (421): a page
  that rebinds its own name to 127.0.0.1 (DNS rebinding) would otherwise read and drive
  the server as if it were same-origin. The decision is ``core.hosts.HostPolicy``'s.
* ``same_origin`` refuses a request a browser marks as coming from another site (403):
  every unsafe method on every path, and on the Bot API path every method, since the Bot
  API answers GET as readily as POST (``<img src=".../bot<token>/sendMessage?…">`` would
  post as the bot). The browser's word is ``Origin`` or ``Sec-Fetch-Site``; a client that
  sends neither (aiogram, curl, the tests) is not a browser and passes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from core.hosts import MISDIRECTED, HostPolicy

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_SITE_FETCH = frozenset({"same-origin", "none"})  # "none": typed in the address bar


def _is_bot_api(path: str) -> bool:
    return path.startswith("/bot")


def refusal(request: web.Request, status: int, reason: str) -> web.Response:
    """Bot API shape on the Bot API path (aiogram reads it), the control API's elsewhere."""
    if _is_bot_api(request.path):
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": reason}
    else:
        body = {"ok": False, "error": reason}
    return web.Response(
        text=json.dumps(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


class HostGuard:
    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        local = str(sockname[0]) if sockname else None
        reason = self.policy.refusal(request.headers.get("Host"), local)
        if reason is not None:
            return refusal(request, MISDIRECTED, f"Misdirected Request: {reason}")
        return await handler(request)


def cross_site(request: web.Request) -> bool:
    """The browser says this request comes from a page of another origin."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.lower() not in SAME_SITE_FETCH:
        return True
    origin = request.headers.get("Origin")
    return origin is not None and origin != f"{request.scheme}://{request.host}"


@web.middleware
async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    guarded = request.method not in SAFE_METHODS or _is_bot_api(request.path)
    if guarded and cross_site(request):
        return refusal(request, 403, "Forbidden: cross-origin request refused")
    return await handler(request)
