"""Which ``Host`` headers a local web server answers: the guard against DNS rebinding.

A page on ``evil.example`` can make its own name resolve to 127.0.0.1 a moment after it
loaded; the browser then sends the page's next requests to the shop's loopback server, with
``Host: evil.example`` and the page treating the answers as same-origin. Binding to
loopback does not stop that; refusing names the server was never meant to be reached by
does. Allowed: ``localhost``, ``127.0.0.1``, ``[::1]``, the address the connection arrived
on, the address the server was told to bind, and whatever ``ALLOWED_HOSTS`` lists, each on
any port. ``*`` in ``ALLOWED_HOSTS`` turns the check off (a deployment whose proxy checks).

``HostPolicy`` is the decision; ``AllowedHostsMiddleware`` applies it to any ASGI app (the
dashboard) with no framework import, so core stays framework-free.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
MISDIRECTED = 421

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def host_name(value: str | None) -> str | None:
    """The name in a ``Host`` header without its port, lower case: ``[::1]:80`` → ``::1``."""
    if value is None:
        return None
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        rest = value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return value[1:end] or None
    name, sep, port = value.rpartition(":")
    if not sep:
        name = value
    elif not port.isdigit() or ":" in name:
        return None  # a bare IPv6 address or a malformed port: never a name we serve
    return name.rstrip(".") or None


def split_hosts(value: str | Iterable[str]) -> tuple[str, ...]:
    """``ALLOWED_HOSTS``: a comma list (or sequence) of names, ports and brackets dropped."""
    items = value.split(",") if isinstance(value, str) else value
    out: list[str] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        name = "*" if item == "*" else host_name(item)
        if name is None:
            raise ValueError(f"{item!r} is not a host name")
        if name not in out:
            out.append(name)
    return tuple(out)


class HostPolicy:
    def __init__(self, allowed: Iterable[str] = (), *, bind_host: str | None = None) -> None:
        names = set(DEFAULT_HOSTS) | set(split_hosts(tuple(allowed)))
        if bind_host and bind_host not in ("0.0.0.0", "::", ""):
            names.add(bind_host.strip("[]").lower())
        self.any = "*" in names
        self.names = frozenset(names - {"*"})

    def refusal(self, host_header: str | None, local_address: str | None = None) -> str | None:
        """``None`` when the request may be served, otherwise the reason it may not."""
        if self.any:
            return None
        name = host_name(host_header)
        if name is None:
            return "a request must name this server in its Host header"
        if name in self.names or (local_address and name == local_address.lower()):
            return None
        return f"host {name!r} is not served here (add it to ALLOWED_HOSTS)"


class AllowedHostsMiddleware:
    """Pure ASGI: answers 421 to a request whose ``Host`` the policy refuses."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = None
        for key, value in scope.get("headers") or ():
            if key == b"host":
                host = value.decode("latin-1")
                break
        server = scope.get("server")
        reason = self.policy.refusal(host, str(server[0]) if server else None)
        if reason is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
            return
        body = reason.encode()
        await send(
            {
                "type": "http.response.start",
                "status": MISDIRECTED,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def allowed_hosts(allowed: Iterable[str] = ()) -> Callable[..., ASGIApp]:
    """A middleware factory (``factory(app=…)``) for frameworks that build the stack."""
    policy = HostPolicy(allowed)

    def factory(app: ASGIApp) -> ASGIApp:
        return AllowedHostsMiddleware(app, policy)

    return factory
