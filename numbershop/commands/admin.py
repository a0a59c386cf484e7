"""``numbershop admin run``: the staff dashboard alone, under uvicorn.

Binds to 127.0.0.1 by default: the dashboard moves money, so exposing it is a deliberate
choice (``--host 0.0.0.0`` behind TLS), never an accident.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

from core.config import load_settings
from numbershop.cli import CliError

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("numbershop.admin")


def _server_class() -> type[uvicorn.Server]:
    import uvicorn

    class Server(uvicorn.Server):
        """Stops on SIGINT/SIGTERM without re-raising the signal at exit (uvicorn's default),
        so a requested stop exits 0 like every other numbershop command."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    return Server


async def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    _Server = _server_class()

    from admin.app import create_app

    if not 0 < args.port < 65536:
        raise CliError(f"--port {args.port} is not a TCP port")
    settings = load_settings()
    app = create_app(settings, secure_cookies=args.secure_cookies)
    ctx = app.state.admin
    try:
        if await ctx.staff.count() == 0:
            log.warning("no staff accounts yet: create one with `numbershop staff add NAME --role admin`")
    except Exception as exc:
        raise CliError(
            f"the database is not ready ({type(exc).__name__}); run `numbershop db upgrade`"
        ) from None
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    server = _Server(config)
    log.info("dashboard on http://%s:%s/", args.host, args.port)
    await server.serve()
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("admin", help="the staff dashboard")
    sub = group.add_subparsers(dest="admin_command", metavar="ACTION")
    sub.required = True
    run = sub.add_parser("run", help="serve the dashboard")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument(
        "--secure-cookies", action="store_true", help="mark cookies Secure (when served over HTTPS)"
    )
    run.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-For from --forwarded-allow-ips (behind a reverse proxy)",
    )
    run.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    run.set_defaults(func=cmd_run)
