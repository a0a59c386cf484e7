"""The emulator over HTTP: the Bot API at ``/bot{token}/{method}``, the control API at
``/control/…`` (see ``control``), and ``running_emulator`` to serve it in-process.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from core.hosts import HostPolicy
from numbershop.emulator.errors import BotApiError, bad_request
from numbershop.emulator.guards import HostGuard, same_origin
from numbershop.emulator.methods import Params, run_method
from numbershop.emulator.numeric import strict_json
from numbershop.emulator.state import Emulator

EMULATOR_KEY = web.AppKey("numbershop_emulator", Emulator)


def make_app(emulator: Emulator | None = None, *, hosts: HostPolicy | None = None) -> web.Application:
    """The emulator's application; browsers get only same-origin requests through, on a
    ``Host`` that ``hosts`` allows (see ``guards``)."""
    # Here, not at the top: control imports EMULATOR_KEY from this module (a real cycle).
    from numbershop.emulator.control import add_control_routes

    host_guard = HostGuard(hosts if hosts is not None else HostPolicy())
    app = web.Application(middlewares=[host_guard.middleware, same_origin])
    app[EMULATOR_KEY] = emulator if emulator is not None else Emulator()
    app.router.add_route("*", "/bot{token}/{method}", handle_bot_api)
    add_control_routes(app)

    async def wake_long_polls(app: web.Application) -> None:
        app[EMULATOR_KEY].close()

    app.on_shutdown.append(wake_long_polls)
    return app


def _reply(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False), status=status, content_type="application/json"
    )


async def read_params(request: web.Request) -> Params:
    raw: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = strict_json(await request.text())
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad_request("the request body must be a JSON object")
            raw.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            for key, value in (await request.post()).items():
                raw[key] = value if isinstance(value, str) else None  # files are not emulated
    return Params(raw)


async def handle_bot_api(request: web.Request) -> web.Response:
    started = time.perf_counter()
    emulator = request.app[EMULATOR_KEY]
    try:
        bot = emulator.resolve_token(request.match_info["token"])
    except BotApiError as exc:
        return _reply(exc.body(), exc.error_code)
    result, error = await run_method(bot, request.match_info["method"], lambda: read_params(request), started)
    if error is not None:
        return _reply(error.body(), error.error_code)
    return _reply({"ok": True, "result": result})


@asynccontextmanager
async def running_emulator(
    host: str = "127.0.0.1", port: int = 0, emulator: Emulator | None = None
) -> AsyncIterator[tuple[Emulator, str]]:
    """Serve an emulator on a real socket; yields it and its base URL (the bound port)."""
    emulator = emulator if emulator is not None else Emulator()
    emulator.open()
    runner = web.AppRunner(
        make_app(emulator, hosts=HostPolicy(bind_host=host)), access_log=None, shutdown_timeout=2.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield emulator, f"http://{shown}:{bound_port}"
    finally:
        emulator.close()
        await runner.cleanup()
