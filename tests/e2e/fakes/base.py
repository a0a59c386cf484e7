"""A fake upstream on loopback: real HTTP, scripted faults, a log of every call.

Fakes are written from the protocol references in ``shared/reference``, never from the
adapters, so a contract test fails when an adapter and the documented protocol disagree.

``script(route, ...)`` queues one-off behaviours consumed in order by the next requests on
that route: a canned reply, a delay (before replying, or after doing the real work — "the
request landed, the reply was lost"), an HTTP status with headers (429 + Retry-After), or a
connection reset.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Fault:
    body: str | None = None  # reply with this instead of the real behaviour
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain"
    delay: float = 0.0  # seconds before replying
    apply: bool = False  # do the real work first, then delay (reply lost after the effect)
    reset: bool = False  # drop the connection instead of replying


@dataclass
class Call:
    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class FakeServer:
    """Subclasses add routes in ``routes(app)``; ``route_name(request)`` names a request."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.in_flight = 0
        self.max_in_flight: dict[str, int] = defaultdict(int)  # per route, highest overlap seen

    # --- lifecycle
    async def start(self) -> str:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- scripting
    def script(self, route: str, *, times: int = 1, **fault: Any) -> None:
        for _ in range(times):
            self._faults[route].append(Fault(**fault))

    def calls_to(self, route: str) -> list[Call]:
        return [c for c in self.calls if c.route == route]

    async def dispatch(
        self, route: str, request: web.Request, real: Handler, body: Any = None
    ) -> web.StreamResponse:
        self.calls.append(
            Call(route, request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        self.in_flight += 1
        self.max_in_flight[route] = max(self.max_in_flight[route], self.in_flight)
        try:
            return await self._serve(route, request, real)
        finally:
            self.in_flight -= 1

    async def _serve(self, route: str, request: web.Request, real: Handler) -> web.StreamResponse:
        fault = self._faults[route].popleft() if self._faults[route] else None
        if fault is None:
            return await real(request)
        if fault.apply:
            response = await real(request)
            await asyncio.sleep(fault.delay)
            if fault.reset:
                return _reset(request)
            return response
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.reset:
            return _reset(request)
        if fault.body is None and fault.status == 200:
            return await real(request)
        return web.Response(
            status=fault.status, text=fault.body or "", headers=fault.headers, content_type=fault.content_type
        )


def _reset(request: web.Request) -> web.StreamResponse:
    """Abort the TCP connection: the client sees a disconnect without a response."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(text="")
