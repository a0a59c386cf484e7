"""CPU per update-log statement on PostgreSQL: a connection from the pool per statement
(``Database.read``/``write_one``) against one kept open (``Database.kept_connection``).

    python -m bench.kept [--statements 3000] [--url postgresql://…]

Runs the bot's two update-log statements (the read of handled ids and the record) in turn,
``--statements`` times each way, on a throwaway PostgreSQL database (``--url`` or
NUMBERSHOP_TEST_POSTGRES_URL), and reports the CPU of this process per statement
(``time.process_time``: what the statement costs the bot, whatever else the machine does).
The pool way is the baseline; the last line is one JSON object with both and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.sql import Executable

from bench._support import driver_gc_off, throwaway_database
from core.db.engine import Database, KeptConnection, Written
from core.db.tables import processed_updates
from core.update_log import _HANDLED, record_updates


class _Pooled(KeptConnection):
    """The baseline: the same statements, each on a connection taken from the pool."""

    async def read(self, statement: Executable, parameters: Any = None) -> Written:
        async with self.db.read() as conn:
            return Written.of(await conn.execute(statement, parameters))

    async def write(self, statement: Executable, parameters: Any = None) -> Written:
        return await self.db.write_one(statement, parameters)


async def _cpu_per_statement(conn: KeptConnection, statements: int, first_id: int) -> float:
    now = datetime.now(UTC)
    for i in range(100):  # warm the statement caches and the connection
        await conn.read(_HANDLED, {"ids": [first_id - 1 - i]})
    started = time.process_time()
    for i in range(statements):
        await conn.read(_HANDLED, {"ids": [first_id + i]})
        await record_updates(conn, [first_id + i], now)
    return (time.process_time() - started) / (2 * statements) * 1e6


async def run(url: str | None, statements: int) -> dict[str, float]:
    async with throwaway_database("postgres", url, "bench.kept") as db:
        assert isinstance(db, Database)
        async with db.begin() as conn:
            await conn.run_sync(processed_updates.metadata.create_all, tables=[processed_updates])
        with driver_gc_off():
            pooled = await _cpu_per_statement(_Pooled(db), statements, 1_000_000)
            kept = await _cpu_per_statement(db.kept_connection(), statements, 2_000_000)
    return {
        "statements": statements,
        "pooled_cpu_us_per_statement": round(pooled, 1),
        "kept_cpu_us_per_statement": round(kept, 1),
        "kept_over_pooled": round(kept / pooled, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.kept")
    parser.add_argument("--statements", type=int, default=3000)
    parser.add_argument("--url", help="PostgreSQL server (default NUMBERSHOP_TEST_POSTGRES_URL)")
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.statements))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
