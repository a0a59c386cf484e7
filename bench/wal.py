"""How long a SQLite commit holds the event loop, with WAL checkpoints inline or off the loop.

    python -m bench.wal [--commits 5000] [--rows 4] [--mode all|none|inline|offloop]

Runs ``--commits`` write transactions through ``Database.begin()`` on a throwaway file, each
inserting ``--rows`` rows of ~1 KB (a few WAL pages, like a purchase), and times each
transaction's commit (from its last statement to the end of the ``async with``). ``inline``
is SQLite's default: the commit that takes the WAL past 1000 pages runs the checkpoint itself,
on the event loop. ``offloop`` is the shop's setting: ``wal_autocheckpoint=0`` and a PASSIVE
checkpoint in a thread every ``Database.CHECKPOINT_EVERY_COMMITS`` write commits. ``none``
never checkpoints: the baseline, i.e. what the machine's own noise looks like.

Per mode: commit wall time p50/p99/max, how many commits took over 5 ms, and the commit's CPU
time in this thread (``time.thread_time``: what the commit itself did, immune to other
processes preempting us on a busy machine, though it misses fsync waits); the last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from sqlalchemy import text

from bench._support import driver_gc_off, percentile, throwaway_database

STALL_MS = 5.0


async def run(mode: str, commits: int, rows: int) -> dict[str, float | int | str]:
    async with throwaway_database("sqlite", None, "bench.wal") as db:
        async with db.begin() as conn:
            await conn.execute(text("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
        if mode in ("inline", "none"):
            db.checkpoint_every = 0
        body = "x" * 1000
        times: list[float] = []
        cpu: list[float] = []
        with driver_gc_off():
            for _ in range(commits):
                async with db.begin() as conn:
                    if mode == "inline":  # per connection; SQLite's own default
                        await conn.exec_driver_sql("PRAGMA wal_autocheckpoint=1000")
                    await conn.execute(
                        text("INSERT INTO bench_rows (body) VALUES (:b)"), [{"b": body}] * rows
                    )
                    started, started_cpu = time.perf_counter(), time.thread_time()
                times.append((time.perf_counter() - started) * 1000)
                cpu.append((time.thread_time() - started_cpu) * 1000)
                await asyncio.sleep(0)  # let the loop (and a finished checkpoint) run
            await db.wait_for_checkpoint()
        return {
            "mode": mode,
            "commits": commits,
            "commit_p50_ms": round(percentile(times, 0.50), 3),
            "commit_p99_ms": round(percentile(times, 0.99), 3),
            "commit_max_ms": round(max(times), 3),
            "commits_over_5ms": sum(t > STALL_MS for t in times),
            "commit_cpu_max_ms": round(max(cpu), 3),
            "commits_cpu_over_1ms": sum(t > 1.0 for t in cpu),
        }


async def main_async(args: argparse.Namespace) -> list[dict[str, float | int | str]]:
    modes = ["none", "inline", "offloop"] if args.mode == "all" else [args.mode]
    results = []
    for mode in modes:
        result = await run(mode, args.commits, args.rows)
        r = result
        print(
            f"{mode:8} commit p50 {r['commit_p50_ms']:.3f} ms  p99 {r['commit_p99_ms']:.3f} ms  "
            f"max {r['commit_max_ms']:.3f} ms  over {STALL_MS:.0f} ms: {r['commits_over_5ms']}  "
            f"cpu max {r['commit_cpu_max_ms']:.3f} ms  cpu over 1 ms: {r['commits_cpu_over_1ms']}"
        )
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wal", description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--mode", choices=["all", "none", "inline", "offloop"], default="all")
    results = asyncio.run(main_async(parser.parse_args()))
    print(json.dumps({r["mode"]: r for r in results}))


if __name__ == "__main__":
    main()
