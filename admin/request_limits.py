"""Refuse oversized or malformed requests before anything parses them.

Runs outermost, ahead of sessions and CSRF: the CSRF check itself parses a posted form to find
its token, so without this an anonymous 6 MB form of two million fields was parsed in full
before being refused. A body larger than :data:`MAX_BODY_BYTES` (by its ``Content-Length``, or
while it streams in without one) gets 413 without being read further; a form with more than
:data:`MAX_FORM_FIELDS` fields gets 413 before it is parsed. Every dashboard form and API body
is a few hundred bytes.

NUL is refused (400) in the path, the query string and in form and JSON bodies: no input needs
it, and PostgreSQL refuses it in text, which turned it into a 500. The provider webhook is
checked for size only; its body is the provider's, verified by signature.
"""

from __future__ import annotations

import json
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
MAX_FORM_FIELDS = 200
WEBHOOK_PREFIX = "/webhooks/"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RequestRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


def _has_nul(raw: bytes) -> bool:
    return b"\x00" in raw or b"%00" in raw


class RequestLimitsMiddleware:
    def __init__(
        self, app: ASGIApp, max_body: int = MAX_BODY_BYTES, max_fields: int = MAX_FORM_FIELDS
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_fields = max_fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        try:
            receive = await self._check(scope, receive)
        except RequestRefused as refused:
            await _refuse(scope, send, refused)
            return
        await self.app(scope, receive, send)

    async def _check(self, scope: Scope, receive: Receive) -> Receive:
        path: str = scope.get("path", "")
        webhook = path.startswith(WEBHOOK_PREFIX)
        raw_path, query = scope.get("raw_path") or b"", scope.get("query_string", b"")
        if "\x00" in path or _has_nul(raw_path) or _has_nul(query):
            raise RequestRefused(400, "the address contains a NUL character")
        if scope.get("method") not in _BODY_METHODS:
            return receive
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise RequestRefused(400, "the Content-Length header is not a number") from None
            if declared > self.max_body:
                raise RequestRefused(413, f"the request body is larger than {self.max_body} bytes")
        body = bytearray()
        more = True
        while more:
            message: Any = await receive()
            if message["type"] == "http.disconnect":
                raise RequestRefused(400, "the client went away")
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.max_body:
                raise RequestRefused(413, f"the request body is larger than {self.max_body} bytes")
        content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        fields = 0
        if content_type == b"application/x-www-form-urlencoded":
            fields = body.count(b"&") + 1
        elif content_type == b"multipart/form-data":
            fields = body.lower().count(b"content-disposition")
        if fields > self.max_fields:
            raise RequestRefused(413, f"the form has more than {self.max_fields} fields")
        if not webhook and _body_has_nul(bytes(body), content_type):
            raise RequestRefused(400, "the request contains a NUL character")
        return _replay(bytes(body), receive)


def _body_has_nul(body: bytes, content_type: bytes) -> bool:
    if b"\x00" in body:
        return True
    if content_type == b"application/x-www-form-urlencoded":
        return b"%00" in body
    if content_type.endswith(b"json"):
        return b"\\u0000" in body.lower()
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(scope: Scope, send: Send, refused: RequestRefused) -> None:
    path: str = scope.get("path", "")
    machine = path == "/api" or path.startswith(("/api/", "/metrics", WEBHOOK_PREFIX))
    if machine:
        body = json.dumps({"status_code": refused.status, "detail": refused.reason}).encode()
        media = b"application/json"
    else:
        body = refused.reason.encode()
        media = b"text/plain; charset=utf-8"
    start: Any = {
        "type": "http.response.start",
        "status": refused.status,
        "headers": [
            (b"content-type", media),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    await send(start)
    end: Any = {"type": "http.response.body", "body": body}
    await send(end)
