"""CSRF protection on every unsafe request: a token bound to the session, and an Origin check.

The token is an HMAC, under the dashboard secret, of the session id the browser presents (the
session cookie is HttpOnly, so another site can neither read nor compute it). Before login
there is no session, so the token is bound to a random pre-login cookie instead; login issues
a new session id (no fixation), which by construction also rotates the token — a token seen
before login, or in someone else's session, is worthless after it. A double-submit cookie
alone was not tied to the session and survived login.

Unsafe requests whose ``Origin`` (or, without it, ``Referer``) names another host are refused
before anything else, with the reason: browsers send these headers on cross-site posts, and
the check holds even if a token ever leaks.

Skipped only where a browser cannot be tricked into sending the credential: ``/api`` requests
that carry ``Authorization: Bearer`` (browsers never attach that header on their own; an /api
request riding on a session cookie is still checked, via the ``X-CSRFToken`` header), and the
provider webhook, which proves itself with an HMAC signature.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import PermissionDeniedException
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from admin.sessions import SESSION_COOKIE

CSRF_COOKIE = "ns_csrf"  # pre-login binding only; never the token itself
CSRF_FIELD = "_csrf_token"
CSRF_HEADER = b"x-csrftoken"
WEBHOOK_PREFIX = "/webhooks/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")


def csrf_token_for(secret: str, binding: str) -> str:
    return hmac.new(secret.encode(), f"csrf:{binding}".encode(), hashlib.sha256).hexdigest()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _cookies(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, sep, val = part.strip().partition("=")
                if sep and name not in out:
                    out[name] = val
    return out


def _has_bearer(scope: Scope) -> bool:
    value = _header(scope, b"authorization")
    return value is not None and value[:7].lower() == "bearer "


def foreign_origin(scope: Scope) -> str | None:
    """The foreign origin an unsafe request came from, or None when it is our own (or unsaid)."""
    host = (_header(scope, b"host") or "").strip().lower()
    origin = _header(scope, b"origin")
    source = origin if origin is not None else _header(scope, b"referer")
    if source is None:
        return None  # not a browser's cross-site request (browsers send Origin on those)
    source = source.strip()
    if source.lower() == "null":
        return "null"
    try:
        netloc = urlsplit(source).netloc.lower()
    except ValueError:
        return source[:100]
    if not netloc or not host or netloc != host:
        return source[:100]
    return None


class SessionCSRFMiddleware:
    def __init__(self, app: ASGIApp, secret: str, secure: bool = False) -> None:
        self.app = app
        self.secret = secret
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        api = path == "/api" or path.startswith("/api/")
        if path.startswith(WEBHOOK_PREFIX) or (api and _has_bearer(scope)):
            await self.app(scope, receive, send)
            return
        cookies = _cookies(scope)
        session_id = cookies.get(SESSION_COOKIE)
        pre_login = cookies.get(CSRF_COOKIE) or ""
        new_pre_login = None
        if session_id and isinstance(scope.get("session"), dict) and scope.get("session"):
            # A session the store knows (a planted or expired id loads as empty: not bound to).
            binding = f"session:{session_id}"
        else:
            if len(pre_login) < 32:
                pre_login = new_pre_login = secrets.token_hex(32)
            binding = f"anon:{pre_login}"
        expected = csrf_token_for(self.secret, binding)
        state = ScopeState.from_scope(scope)

        if scope.get("method", "GET") not in SAFE_METHODS:
            foreign = foreign_origin(scope)
            if foreign is not None:
                raise PermissionDeniedException(
                    f"cross-site request refused: it came from {foreign}, not from this dashboard"
                )
            given = _header(scope, CSRF_HEADER)
            if given is None and (_header(scope, b"content-type") or "").encode().startswith(FORM_TYPES):
                request: Any = scope["litestar_app"].request_class(scope=scope, receive=receive)
                given = (await request.form()).get(CSRF_FIELD)
            if (
                new_pre_login is not None
                or not isinstance(given, str)
                or not hmac.compare_digest(given.encode(), expected.encode())
            ):
                raise PermissionDeniedException("CSRF token verification failed")

        state.csrf_token = expected
        await self.app(scope, receive, self._send(send, new_pre_login))

    def _send(self, send: Send, new_pre_login: str | None) -> Send:
        if new_pre_login is None:
            return send

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = Cookie(
                    key=CSRF_COOKIE,
                    value=new_pre_login,
                    path="/",
                    secure=self.secure,
                    httponly=True,
                    samesite="lax",
                )
                MutableScopeHeaders.from_message(message).add("set-cookie", cookie.to_header(header=""))
            await send(message)

        return wrapped


def csrf_middleware(secret: str, *, secure: bool = False) -> DefineMiddleware:
    return DefineMiddleware(SessionCSRFMiddleware, secret=secret, secure=secure)
