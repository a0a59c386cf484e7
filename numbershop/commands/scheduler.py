"""``numbershop scheduler run``: the scheduled jobs alone, for scaled-out deployments.

On PostgreSQL several of these may run: one leads (an advisory lock), the others stand by and
take over when it dies. ``--once`` runs every job one time and exits (for cron or a check).
"""

from __future__ import annotations

import argparse
import asyncio

from core.bootstrap import open_core
from core.config import load_settings
from numbershop.commands._shared import print_json
from numbershop.runtime import stop_on_signals
from scheduler.runner import run_scheduler
from scheduler.tickers import ShopJobs


async def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    async with open_core(settings, with_providers=True) as core:
        if args.once:
            results = await ShopJobs(core).run_all_once()
            print_json(
                {
                    "jobs": {
                        k: v if isinstance(v, (int, str, dict)) or v is None else getattr(v, "status", str(v))
                        for k, v in results.items()
                    }
                }
            )
            return 1 if any(isinstance(v, str) and v.startswith("error") for v in results.values()) else 0
        stop = asyncio.Event()
        with stop_on_signals(stop):
            await run_scheduler(core, stop=stop)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("scheduler", help="the scheduled jobs (polling, expiry, reconciliation…)")
    cmds = group.add_subparsers(dest="scheduler_command", metavar="ACTION", required=True)
    run = cmds.add_parser("run", help="run the jobs until interrupted (one leader on PostgreSQL)")
    run.add_argument("--once", action="store_true", help="run every job once and exit")
    run.set_defaults(func=cmd_run)
