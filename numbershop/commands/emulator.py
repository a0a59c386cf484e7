"""``numbershop emulator serve``: the emulated Telegram Bot API on its own, for pointing a
bot at (``TELEGRAM_API_URL``) and driving it through the control API by hand or from another
process. Runs until Ctrl-C or SIGTERM and stops cleanly (long polls are released at once).
"""

from __future__ import annotations

import argparse
import asyncio

from numbershop.cli import CliError
from numbershop.commands._shared import port
from numbershop.emulator import Emulator, EmulatorError, running_emulator
from numbershop.runtime import stop_on_signals


async def cmd_serve(args: argparse.Namespace) -> int:
    emulator = Emulator(auto_register=not args.strict)
    for token in args.bot:
        try:
            emulator.add_bot(token)
        except EmulatorError as exc:
            raise CliError(str(exc)) from None
    if args.strict and not args.bot:
        raise CliError("--strict needs at least one --bot TOKEN")
    stop = asyncio.Event()
    try:
        with stop_on_signals(stop):
            async with running_emulator(args.host, args.port, emulator) as (_, base_url):
                print(
                    f"emulator: Bot API at {base_url}/bot<token>/<method>, "
                    f"control API at {base_url}/control/ (Ctrl-C to stop)",
                    flush=True,
                )
                await stop.wait()
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    print("emulator: stopped", flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser("emulator", help="the emulated Telegram Bot API server")
    sub = group.add_subparsers(dest="emulator_command", metavar="ACTION")
    sub.required = True

    serve = sub.add_parser("serve", help="serve the Bot API and its control API over HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=port, default=8081, help="port (8081; 0 picks a free one)")
    serve.add_argument(
        "--bot",
        action="append",
        default=[],
        metavar="TOKEN",
        help="register a bot token up front (repeatable); any well-formed token also "
        "registers itself on first use unless --strict",
    )
    serve.add_argument(
        "--strict", action="store_true", help="answer 401 Unauthorized to tokens not given with --bot"
    )
    serve.set_defaults(func=cmd_serve)
