"""``numbershop db …``: bring the database schema to the code's revision.

``upgrade`` is safe to run at any time and from several processes at once: it migrates to
head and seeds the ledger's system accounts and the catalogue idempotently (core/db/migrate.py).

The database modules are imported inside the commands (lazily, on purpose): ``numbershop db
--help`` then starts without SQLAlchemy, Alembic or pydantic.
"""

from __future__ import annotations

import argparse

from numbershop.commands._shared import add_json_flag, print_json


async def cmd_upgrade(args: argparse.Namespace) -> int:
    from core.bootstrap import database_errors, display_url  # lazy: keeps --help fast
    from core.config import load_settings
    from core.db import migrate

    url = load_settings().DATABASE_URL
    with database_errors(url):
        before = await migrate.current_revision(url)
        after = await migrate.upgrade(url)
    if args.json:
        print_json(
            {"database": display_url(url), "from": before, "to": after, "head": migrate.head_revision()}
        )
    elif before == after:
        print(f"{display_url(url)}: already at revision {after} (head); reference data checked")
    else:
        print(f"{display_url(url)}: upgraded from {before or 'an empty database'} to {after} (head)")
    return 0


async def cmd_current(args: argparse.Namespace) -> int:
    from core.bootstrap import database_errors, display_url  # lazy: keeps --help fast
    from core.config import load_settings
    from core.db import migrate

    url = load_settings().DATABASE_URL
    with database_errors(url):
        current = await migrate.current_revision(url)
    head = migrate.head_revision()
    if args.json:
        print_json(
            {"database": display_url(url), "current": current, "head": head, "up_to_date": current == head}
        )
    else:
        state = "up to date" if current == head else "behind: run `numbershop db upgrade`"
        print(f"{display_url(url)}: revision {current or 'none'}, head {head} ({state})")
    return 0 if current == head else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("db", help="database schema")
    cmds = group.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = cmds.add_parser("upgrade", help="migrate to the latest revision and seed reference data")
    add_json_flag(up)
    up.set_defaults(func=cmd_upgrade)
    cur = cmds.add_parser("current", help="show the revision the database is at (exit 1 if behind)")
    add_json_flag(cur)
    cur.set_defaults(func=cmd_current)
