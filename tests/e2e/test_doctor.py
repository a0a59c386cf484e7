"""``numbershop doctor`` against real servers on loopback: the Bot API emulator, a fake
SMS-Activate, SQLite files migrated or not, a silent socket; and the command itself in a
subprocess for its exit codes."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from core.config import ConfigError, Settings
from core.db import migrate
from numbershop.commands.doctor import Check, run_checks
from numbershop.emulator import Emulator, running_emulator

from .fakes.smsactivate_server import PATH, FakeSmsActivate

TOKEN = "4242:doctor-test-token-abcdefghij"
SECRET = "x" * 40


@pytest.fixture
async def migrated(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/shop.db"
    await migrate.upgrade(url)
    return url


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[Emulator, str]]:
    strict = Emulator(auto_register=False)
    strict.add_bot(TOKEN, username="doctor_bot")
    async with running_emulator(emulator=strict) as served:
        yield served


@pytest.fixture(autouse=True)
def no_webhook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEBHOOK_URL", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)


def settings(url: str, **kw: Any) -> Settings:
    values: dict[str, Any] = dict(DATABASE_URL=url, ADMIN_SECRET_KEY=SECRET, ALLOWED_HOSTS="shop.example.com")
    values.update(kw)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def test_a_good_configuration_passes(migrated: str, emulator: tuple[Emulator, str]) -> None:
    checks = by_name(
        await run_checks(settings(migrated, BOT_TOKEN=TOKEN, TELEGRAM_API_URL=emulator[1]), timeout=5)
    )
    assert [c.line() for c in checks.values() if c.failed] == []
    assert checks["database"].state == "ok" and "(head)" in checks["database"].detail
    assert checks["bot token"].state == "ok" and "@doctor_bot" in checks["bot token"].detail
    assert checks["redis"].detail.startswith("REDIS_URL not set: fine for one process, needed for several")
    assert checks["webhook"].state == "note"
    assert checks["provider simulator"].state == "warn"


async def test_an_unmigrated_database_fails_with_the_fix(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()
    checks = by_name(await run_checks(settings(f"sqlite+aiosqlite:///{tmp_path}/empty.db"), timeout=5))
    line = checks["database"].line()
    assert line.startswith("FAIL") and "revision none" in line
    assert line.endswith("fix: run `numbershop db upgrade`")


async def test_a_missing_sqlite_file_is_reported_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"
    checks = by_name(await run_checks(settings(f"sqlite+aiosqlite:///{path}"), timeout=5))
    assert checks["database"].failed and "does not exist" in checks["database"].detail
    assert not path.exists()


async def test_postgres_built_without_migrations_fails(pg_database_url: str | None) -> None:
    if pg_database_url is None:
        pytest.skip("PostgreSQL variant skipped: set NUMBERSHOP_TEST_POSTGRES_URL to run it")
    checks = by_name(await run_checks(settings(pg_database_url), timeout=5))
    line = checks["database"].line()
    assert line.startswith("FAIL") and "revision none" in line
    assert line.endswith("fix: run `numbershop db upgrade`")


async def test_an_unreachable_postgres_fails_with_the_fix() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    url = f"postgresql+asyncpg://shop:hunter2@127.0.0.1:{port}/shop"
    checks = by_name(await run_checks(settings(url), timeout=2))
    line = checks["database"].line()
    assert line.startswith("FAIL  database: cannot use") and "hunter2" not in line
    assert line.endswith("fix: check DATABASE_URL and that the database server is running")


async def test_a_bad_token_fails_against_the_emulator(migrated: str, emulator: tuple[Emulator, str]) -> None:
    bad = "4242:someone-elses-token-abcdefghij"
    checks = by_name(
        await run_checks(settings(migrated, BOT_TOKEN=bad, TELEGRAM_API_URL=emulator[1]), timeout=5)
    )
    line = checks["bot token"].line()
    assert line.startswith("FAIL") and "401" in line and "fix: " in line
    assert bad not in "\n".join(c.line() for c in checks.values())


async def test_webhook_must_be_https_and_registered(
    migrated: str, emulator: tuple[Emulator, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings(migrated, BOT_TOKEN=TOKEN, TELEGRAM_API_URL=emulator[1])
    monkeypatch.setenv("WEBHOOK_URL", "http://shop.example.com/tg")
    checks = by_name(await run_checks(s, timeout=5))
    assert checks["webhook"].failed and "not https" in checks["webhook"].detail
    assert checks["WEBHOOK_SECRET"].failed
    monkeypatch.setenv("WEBHOOK_URL", "https://shop.example.com/tg")
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    checks = by_name(await run_checks(s, timeout=5))
    assert checks["webhook"].failed and "no webhook registered" in checks["webhook"].detail
    assert checks["WEBHOOK_SECRET"].state == "ok"


async def test_secrets_and_hosts(migrated: str) -> None:
    checks = by_name(await run_checks(settings(migrated, ADMIN_SECRET_KEY=None, ALLOWED_HOSTS=""), timeout=5))
    assert checks["ADMIN_SECRET_KEY"].failed and "token_urlsafe" in (checks["ADMIN_SECRET_KEY"].fix or "")
    assert checks["ALLOWED_HOSTS"].state == "warn"
    checks = by_name(await run_checks(settings(migrated, ADMIN_SECRET_KEY="short-but-16-chars"), timeout=5))
    assert checks["ADMIN_SECRET_KEY"].failed and "18 characters" in checks["ADMIN_SECRET_KEY"].detail
    checks = by_name(await run_checks(settings(migrated), timeout=5, dashboard_url="http://shop.example.com"))
    assert checks["dashboard cookies"].failed and "not https" in checks["dashboard cookies"].detail


async def test_provider_keys_are_tried(migrated: str) -> None:
    fake = FakeSmsActivate(FakeClock(), api_key="sa-good-key-123")
    base = await fake.start()
    try:
        good = by_name(
            await run_checks(
                settings(
                    migrated,
                    PROVIDERS="smsactivate",
                    SMSACTIVATE_URL=base + PATH,
                    SMSACTIVATE_API_KEY="sa-good-key-123",
                ),
                timeout=5,
            )
        )
        bad = by_name(
            await run_checks(
                settings(
                    migrated,
                    PROVIDERS="smsactivate",
                    SMSACTIVATE_URL=base + PATH,
                    SMSACTIVATE_API_KEY="sa-wrong-key-456",
                ),
                timeout=5,
            )
        )
    finally:
        await fake.stop()
    assert good["provider smsactivate"].state == "ok"
    line = bad["provider smsactivate"].line()
    assert line.startswith("FAIL") and "SMSACTIVATE_API_KEY" in line
    assert "sa-wrong-key-456" not in line
    with pytest.raises(ConfigError, match="FIVESIM_API_KEY"):  # stops before any check runs
        settings(migrated, PROVIDERS="fivesim")


async def test_unreachable_services_fail_fast(migrated: str) -> None:
    """A server that accepts and never answers, and a closed Redis port: bounded, not hung."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        started = time.monotonic()
        checks = by_name(
            await asyncio.wait_for(
                run_checks(
                    settings(
                        migrated,
                        BOT_TOKEN=TOKEN,
                        TELEGRAM_API_URL=f"http://127.0.0.1:{port}",
                        REDIS_URL=f"redis://127.0.0.1:{closed_port}/0",
                    ),
                    timeout=0.5,
                ),
                10,
            )
        )
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert checks["bot token"].failed and "cannot reach" in checks["bot token"].detail
    assert checks["redis"].failed
    assert elapsed < 3


@pytest.mark.skipif(
    not os.environ.get("NUMBERSHOP_TEST_REDIS_URL"),
    reason="set NUMBERSHOP_TEST_REDIS_URL to check a live Redis",
)
async def test_a_live_redis_answers(migrated: str) -> None:
    checks = by_name(
        await run_checks(settings(migrated, REDIS_URL=os.environ["NUMBERSHOP_TEST_REDIS_URL"]), timeout=5)
    )
    assert checks["redis"].state == "ok"


# --- the command ------------------------------------------------------------------------------


def doctor(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in Settings.model_fields and k not in ("WEBHOOK_URL", "WEBHOOK_SECRET")
    }
    return subprocess.run(
        [sys.executable, "-m", "numbershop", "doctor", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_exits_0_1_2(tmp_path: Path) -> None:
    asyncio.run(migrate.upgrade(f"sqlite+aiosqlite:///{tmp_path}/shop.db"))
    sqlite3.connect(tmp_path / "empty.db").close()
    env = {"ADMIN_SECRET_KEY": SECRET, "ALLOWED_HOSTS": "shop.example.com"}

    good = doctor(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/shop.db", **env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines()[0].startswith("ok    database:")
    assert good.stdout.rstrip().endswith("all checks passed")

    bad = doctor(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/empty.db", **env)
    assert bad.returncode == 1
    assert any(
        line.startswith("FAIL  database:") and "fix: run `numbershop db upgrade`" in line
        for line in bad.stdout.splitlines()
    )

    wrong = doctor(tmp_path, "--timeout", "soon")
    assert wrong.returncode == 2 and "not a number of seconds" in wrong.stderr
