"""The sandbox's one HTTP server: the Bot API emulator, its control API and the chat page.

Everything lives on one origin (``127.0.0.1:8088`` by default) so the page can drive the
emulator's control API directly: it reads its chat by long polling
``/control/bots/{bot}/chats/{user}``, sends text, presses inline buttons and pays invoices
exactly as the tests do, while the bot long-polls ``/bot{token}/getUpdates`` on the same
server. The sandbox adds only what the emulator does not know about:

    GET  /                                   the chat page
    GET  /sandbox/static/{file}              its script and styles
    GET  /sandbox/api/config                 bot, default user, dashboard address, currency
    GET  /sandbox/api/commands               the bot's command list (setMyCommands)
    GET  /sandbox/api/activations            the simulator's open activations (see ``panel``)
    POST /sandbox/api/activations/{id}/deliver   an SMS arrives now {code?}

The server binds to loopback, but any web page open in the same browser can reach loopback
too: the emulator's guards (``numbershop.emulator.guards``) answer only the ``Host`` names
it serves (DNS rebinding) and refuse what a browser marks as cross-site. Nothing here hands
out a secret: the dashboard's sandbox password is printed in the terminal, never served.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from core.hosts import HostPolicy
from numbershop.emulator import Emulator, make_app
from numbershop.emulator.numeric import strict_json
from numbershop.emulator.state import EmulatedBot
from numbershop.runtime import Component
from numbershop.sandbox.panel import DeliveryError, DeliveryPanel

STATIC = Path(__file__).resolve().with_name("static")
CONFIG_KEY: web.AppKey[dict[str, Any]] = web.AppKey("sandbox_config", dict)
PANEL_KEY = web.AppKey("sandbox_panel", DeliveryPanel)
BOT_KEY = web.AppKey("sandbox_bot", EmulatedBot)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def page_config(request: web.Request) -> web.Response:
    bot = request.app[BOT_KEY]
    cfg = request.app[CONFIG_KEY].copy()
    cfg["bot"] = {"id": bot.id, "username": bot.username, "first_name": bot.first_name}
    return _json({"ok": True, "result": cfg})


async def commands(request: web.Request) -> web.Response:
    """The command list as the simulated app shows it: in its language, else the default."""
    language = request.query.get("language_code", "").split("-", 1)[0].lower()
    bot = request.app[BOT_KEY]
    return _json({"ok": True, "result": bot.commands(language_code=language) or bot.commands()})


async def activations(request: web.Request) -> web.Response:
    return _json({"ok": True, "result": await request.app[PANEL_KEY].open_activations()})


async def deliver(request: web.Request) -> web.Response:
    body: dict[str, Any] = {}
    if request.can_read_body:
        try:
            body = strict_json(await request.text() or "{}")
        except ValueError:
            return _json({"ok": False, "error": "the body must be JSON"}, 400)
    code = body.get("code") if isinstance(body, dict) else None
    if code is not None and (not isinstance(code, str) or not code.strip() or len(code) > 16):
        return _json({"ok": False, "error": "code: 1 to 16 characters"}, 400)
    try:
        done = await request.app[PANEL_KEY].deliver(
            request.match_info["activation_id"], code.strip() if code else None
        )
    except DeliveryError as exc:
        return _json({"ok": False, "error": str(exc)}, 409)
    return _json({"ok": True, "result": asdict(done)})


class InFlight:
    """The request handlers running now, so a stop can end the page's long polls at once.

    ``Emulator.close`` releases ``getUpdates`` long polls but not the control API's chat
    long polls (``?since=…&timeout=25``), and aiohttp does not cancel a handler whose client
    is still connected: without this, Ctrl-C with the page open would wait out the poll.
    """

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    @web.middleware
    async def track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is None:
            return await handler(request)
        self.tasks.add(task)
        try:
            return await handler(request)
        finally:
            self.tasks.discard(task)

    async def cancel_all(self) -> None:
        tasks = [t for t in self.tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)


INFLIGHT_KEY = web.AppKey("sandbox_inflight", InFlight)


def make_sandbox_app(
    emulator: Emulator,
    bot: EmulatedBot,
    panel: DeliveryPanel,
    config: dict[str, Any],
    *,
    hosts: HostPolicy | None = None,
    cryptopay: Any = None,
) -> web.Application:
    """The emulator's application (with its guards) plus the chat page and the panel, and
    the simulated Crypto Pay server (``numbershop.cryptopay_sim``) when given."""
    app = make_app(emulator, hosts=hosts)
    if cryptopay is not None:
        cryptopay.routes(app)
    inflight = InFlight()
    app[INFLIGHT_KEY] = inflight
    app.middlewares.append(inflight.track)
    app[CONFIG_KEY] = config
    app[PANEL_KEY] = panel
    app[BOT_KEY] = bot
    app.router.add_get("/", index)
    app.router.add_static("/sandbox/static/", STATIC, append_version=False)
    app.router.add_get("/sandbox/api/config", page_config)
    app.router.add_get("/sandbox/api/commands", commands)
    app.router.add_get("/sandbox/api/activations", activations)
    app.router.add_post("/sandbox/api/activations/{activation_id}/deliver", deliver)
    return app


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket up front: a busy port is one clear error before anything
    else starts, and the real address (``--port 0``) is known for the bot's API URL."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class SandboxServer(Component):
    """Serves the sandbox application on an already-bound socket."""

    name = "sandbox"

    def __init__(self, app: web.Application, emulator: Emulator, sock: socket.socket) -> None:
        self.app = app
        self.emulator = emulator
        self.sock = sock
        self.url = base_url(sock)
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        self.emulator.open()
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()
        return (
            f"chat page {self.url}/ (Bot API emulator at {self.url}/bot<token>/, "
            f"control API at {self.url}/control/)"
        )

    async def stop(self) -> None:
        self.emulator.close()  # a stray getUpdates long poll returns at once
        await self.app[INFLIGHT_KEY].cancel_all()  # the pages' chat long polls end now
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.sock.close()
