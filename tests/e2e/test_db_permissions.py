"""The SQLite database holds password and token hashes: its folder is created 0700 and its
files 0600 (the WAL and shared-memory files too), whatever the process's umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from core.db import migrate
from core.db.engine import Database


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: files 0644, folders 0755
    try:
        yield
    finally:
        os.umask(old)


async def test_a_fresh_database_is_private(tmp_path: Path) -> None:
    database = tmp_path / "data" / "shop.db"
    db = Database(f"sqlite+aiosqlite:///{database}")
    try:
        async with db.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        async with db.read() as conn:  # WAL and shm exist while a connection is open
            assert (await conn.execute(text("SELECT x FROM t"))).scalar() == 1
            files = [database, Path(f"{database}-wal"), Path(f"{database}-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
        assert oct(mode(database.parent)) == "0o700"
    finally:
        await db.dispose()


async def test_migrating_a_new_database_creates_it_private(tmp_path: Path) -> None:
    database = tmp_path / "fresh" / "shop.db"
    await migrate.upgrade(f"sqlite+aiosqlite:///{database}")
    assert oct(mode(database)) == "0o600"
    assert oct(mode(database.parent)) == "0o700"


async def test_an_existing_readable_database_is_tightened(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    database = tmp_path / "shop.db"
    database.touch()
    os.chmod(database, 0o644)
    db = Database(f"sqlite+aiosqlite:///{database}")
    try:
        async with db.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    finally:
        await db.dispose()
    assert oct(mode(database)) == "0o600"
    assert oct(mode(tmp_path)) == "0o755"  # a folder that existed is left alone
