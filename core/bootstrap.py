"""Open the core for one short-lived command: schema checked, services wired, engine closed.

The command line (and anything else that runs one operation and exits) goes through here so
every entry point meets the same rules: the embedded SQLite shop migrates itself, a shared
PostgreSQL must have been migrated on purpose, and a database that cannot be reached becomes
one clear sentence instead of a driver traceback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from core.clock import Clock
from core.config import Settings
from core.db import migrate
from core.errors import ShopError

if TYPE_CHECKING:
    from core.app import Core


class DatabaseUnavailable(ShopError):
    """The database could not be reached or refused the operation for operational reasons."""


def display_url(url: str) -> str:
    """The URL with any password masked, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://…"


def _one_line(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()
    return text[0] if text else type(inner).__name__


@contextmanager
def database_errors(url: str, *, connecting: bool = True) -> Iterator[None]:
    """Turn a driver's operational failure inside the block into ``DatabaseUnavailable``.

    ``connecting``: the block only talks to the database, so a bare ``OSError`` (asyncpg's
    refused connection) is the database's too. Around a long-running body that also talks to
    providers and Telegram, pass False so their socket errors are not blamed on the database.
    """
    operational: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
    if connecting:
        operational += (OSError,)
    try:
        yield
    except operational as exc:
        raise DatabaseUnavailable(f"cannot use the database {display_url(url)}: {_one_line(exc)}") from None
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseUnavailable(f"lost the database {display_url(url)}: {_one_line(exc)}") from None
        raise


@asynccontextmanager
async def open_core(
    settings: Settings, *, clock: Clock | None = None, with_providers: bool = False
) -> AsyncIterator[Core]:
    """Yield a wired ``Core``; providers are built only for commands that call upstream."""
    from core.app import build_core

    url = settings.DATABASE_URL
    with database_errors(url):
        await migrate.ensure_current(url, auto_upgrade=url.startswith("sqlite"))
    core = build_core(settings, clock=clock, providers=None if with_providers else {})
    try:
        with database_errors(url, connecting=False):
            yield core
    finally:
        await core.aclose()
