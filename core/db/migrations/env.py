"""Alembic environment for numbershop (async engines, SQLite and PostgreSQL).

Two ways in:

* ``core.db.migrate`` hands over an open connection in ``config.attributes["connection"]``
  (a sync ``Connection`` reached through ``AsyncConnection.run_sync``). The migration then runs
  inside the caller's transaction and event loop, so the app can migrate while it is running.
* The ``alembic`` command line: the URL comes from ``config.attributes["url"]``, then
  ``sqlalchemy.url`` if someone set it, then ``DATABASE_URL`` through Settings. It is never
  written in alembic.ini.

Autogenerate renders every ALTER as a batch operation (SQLite cannot alter most things in
place; on PostgreSQL a batch is plain ALTERs), and renders our ``TypeDecorator`` columns as
their plain SQL type, so revisions never import application code that may later change.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeDecorator

from core.db.tables import metadata

config = context.config
target_metadata = metadata

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from core.config import load_settings

    return load_settings().DATABASE_URL


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def _skip_empty_autogenerate(context_: Any, revision: Any, directives: list[Any]) -> None:
    cmd_opts = getattr(config, "cmd_opts", None)
    if cmd_opts is not None and getattr(cmd_opts, "autogenerate", False):
        script = directives[0]
        if script.upgrade_ops.is_empty():
            directives[:] = []
            print("No changes in core/db/tables.py; no revision written.")


def _configure_kwargs() -> dict[str, Any]:
    return dict(
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        compare_server_default=True,
        render_item=_render_item,
        process_revision_directives=_skip_empty_autogenerate,
    )


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, **_configure_kwargs())
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    from core.db.migrate import migration_engine

    engine = migration_engine(_url())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_configure_kwargs(),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
elif (connection := config.attributes.get("connection")) is not None:
    do_run_migrations(connection)
else:
    asyncio.run(run_async_migrations())
