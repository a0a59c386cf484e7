"""``numbershop simulator serve``: the simulated provider over HTTP (SMS-Activate protocol).

Point the ``smsactivate`` adapter at it (``SMSACTIVATE_URL=http://127.0.0.1:8089/stubs/
handler_api.php``, ``SMSACTIVATE_API_KEY=sandbox``, ``SMSACTIVATE_COST_RATE=1``) and drive it
through its control API (``core/providers/simulator_http.py`` documents both). Runs until
Ctrl-C or SIGTERM. Binds to loopback by default: the control API has no authentication.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging

from core.clock import SystemClock
from core.providers.simulator import SimulatorProvider
from core.providers.simulator_http import DEFAULT_API_KEY, HANDLER_PATH, start_server
from numbershop.cli import CliError
from numbershop.commands._shared import port
from numbershop.runtime import stop_on_signals

log = logging.getLogger("numbershop.simulator")


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _api_key(text: str) -> str:
    if not text or len(text) > 256 or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError("use 1 to 256 characters without spaces")
    return text


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def cmd_serve(args: argparse.Namespace) -> int:
    simulator = SimulatorProvider(seed=args.seed, clock=SystemClock())
    if not _is_loopback(args.host):
        log.warning(
            "the simulator's control API has no authentication; %s is reachable from other machines",
            args.host,
        )
    stop = asyncio.Event()
    with stop_on_signals(stop):
        try:
            server = await start_server(simulator, api_key=args.api_key, host=args.host, port=args.port)
        except OSError as exc:
            raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        print(
            f"simulator: SMS-Activate protocol at {server.base_url}{HANDLER_PATH} "
            f"(seed {args.seed}), control API at {server.base_url}/control/ (Ctrl-C to stop)",
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await server.stop()
    print("simulator: stopped", flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("simulator", help="the simulated upstream provider")
    sub = group.add_subparsers(dest="simulator_command", metavar="ACTION")
    sub.required = True
    serve = sub.add_parser("serve", help="serve the simulator over HTTP (SMS-Activate protocol)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=port, default=8089, help="TCP port (default 8089)")
    serve.add_argument("--seed", type=_seed, default=1, help="catalogue, numbers and codes follow it")
    serve.add_argument(
        "--api-key",
        type=_api_key,
        default=DEFAULT_API_KEY,
        help=f"the api_key clients must send (default {DEFAULT_API_KEY!r})",
    )
    serve.set_defaults(func=cmd_serve)
