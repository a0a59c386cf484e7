"""``numbershop bot run --webhook [--workers N]``: what it refuses, with exit 2 and one line,
before touching anything (settings are checked before the database is opened); and two
workers on one port over PostgreSQL and Redis (skipped without both)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from numbershop.cli import main
from numbershop.emulator import running_emulator
from tests.conftest import _pg_url, scratch_postgres_database

REPO = Path(__file__).resolve().parents[2]
TOKEN = "777001:numbershop-cli-test"
PG_ENV = "NUMBERSHOP_TEST_POSTGRES_URL"
REDIS_ENV = "NUMBERSHOP_TEST_REDIS_URL"
WEBHOOK_ENV = (
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "WEBHOOK_HOST",
    "WEBHOOK_PORT",
    "WEBHOOK_MAX_CONNECTIONS",
    "REDIS_URL",
    "DATABASE_URL",
    "BOT_TOKEN",
    "TELEGRAM_API_URL",
    "PROVIDERS",
)


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in WEBHOOK_ENV}
    env.update(
        BOT_TOKEN=TOKEN,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/shop.db",
        WEBHOOK_URL="https://shop.example/telegram",
        WEBHOOK_SECRET="s3cret",
    )
    env.update(values)
    return env


def _run(tmp_path: Path, *argv: str, **values: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "numbershop", "bot", "run", *argv],
        cwd=tmp_path,
        env=_env(tmp_path, **values),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_several_workers_without_redis_and_postgresql_exit_2_saying_why(tmp_path: Path) -> None:
    done = _run(tmp_path, "--webhook", "--workers", "2")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "--workers 2 needs REDIS_URL and a PostgreSQL DATABASE_URL" in lines[0]
    assert not (tmp_path / "shop.db").exists()  # refused before opening anything

    done = _run(tmp_path, "--webhook", "--workers", "3", REDIS_URL="redis://127.0.0.1:6379/9")
    assert done.returncode == 2
    assert "--workers 3 needs a PostgreSQL DATABASE_URL" in done.stderr


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--webhook"], {"WEBHOOK_URL": "http://shop.example/telegram"}, "WEBHOOK_URL"),
        (["--webhook"], {"WEBHOOK_URL": "https://shop.example:8080/telegram"}, "WEBHOOK_URL"),
        (["--webhook"], {"WEBHOOK_URL": ""}, "WEBHOOK_URL is not set"),
        (["--webhook"], {"WEBHOOK_SECRET": ""}, "WEBHOOK_SECRET is not set"),
        (["--webhook"], {"WEBHOOK_SECRET": "has space"}, "WEBHOOK_SECRET"),
        (["--webhook"], {"WEBHOOK_SECRET": "x" * 257}, "WEBHOOK_SECRET"),
        (["--webhook"], {"WEBHOOK_MAX_CONNECTIONS": "101"}, "WEBHOOK_MAX_CONNECTIONS"),
        (["--webhook"], {"WEBHOOK_PORT": "0"}, "WEBHOOK_PORT"),
        (["--workers", "2"], {}, "--workers needs --webhook"),
        (["--webhook", "--workers", "0"], {}, "--workers must be at least 1"),
    ],
)
def test_bad_webhook_settings_exit_2_naming_the_problem(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    named: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in WEBHOOK_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in _env(tmp_path, **env).items():
        if name in WEBHOOK_ENV:
            monkeypatch.setenv(name, value)
    assert main(["bot", "run", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0], err
    assert not (tmp_path / "shop.db").exists()


# ------------------------------------------------------------------ two workers, one port


@pytest.fixture
def shared_backends() -> Iterator[tuple[str, str]]:
    """A private, migrated PostgreSQL database and the Redis URL; skipped without both."""
    base, redis_url = _pg_url(), os.environ.get(REDIS_ENV)
    if not base or not redis_url:
        print(f"skipped: set {PG_ENV} and {REDIS_ENV} to run the two-worker test")
        pytest.skip(f"two-worker test skipped: set {PG_ENV} and {REDIS_ENV}")
    with scratch_postgres_database(base, "numbershop_w") as url:
        yield url, redis_url


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return sorted(found)


async def test_two_workers_share_one_port_and_serve_until_sigterm(
    tmp_path: Path, shared_backends: tuple[str, str]
) -> None:
    database_url, redis_url = shared_backends
    secret = "two-workers_secret"
    with socket.socket() as probe:  # a free port for both workers to share
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with running_emulator() as (emulator, base_url):
        tg = emulator.add_bot(TOKEN)
        env = _env(
            tmp_path,
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            TELEGRAM_API_URL=base_url,
            WEBHOOK_URL="https://127.0.0.1/hook",
            WEBHOOK_SECRET=secret,
            WEBHOOK_PORT=str(port),
            PROVIDERS="simulator",
        )
        upgrade = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "numbershop",
            "db",
            "upgrade",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await upgrade.communicate()
        assert upgrade.returncode == 0, err.decode()
        log = (tmp_path / "workers.log").open("wb")  # a file: a full pipe would stall them
        parent = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "numbershop",
            "bot",
            "run",
            "--webhook",
            "--workers",
            "2",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )
        workers: list[int] = []
        try:
            # Both workers registered (so both are listening on the port); then point the
            # emulator at the plain-HTTP listener as a TLS proxy would.
            await tg.wait_until(
                lambda: sum(c.method == "setWebhook" and c.ok for c in tg.calls) >= 2,
                60,
                "both workers' setWebhook",
            )
            workers = _children_of(parent.pid)
            assert parent.returncode is None and len(workers) == 2
            session = AiohttpSession(api=TelegramAPIServer.from_base(base_url))
            admin_bot = Bot(TOKEN, session=session)
            try:
                await admin_bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token=secret)
            finally:
                await session.close()
            users = range(9001, 9011)
            sent = {user: tg.send_text(user, "/start") for user in users}
            for user, update_id in sent.items():
                chat = await tg.wait_for_reply(update_id, 30)
                assert chat.last().text and "Hi," in chat.last().text, user
            assert parent.returncode is None and _children_of(parent.pid) == workers
            parent.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                code = await parent.wait()
            assert code == 0, (tmp_path / "workers.log").read_text()[-2000:]
            for pid in workers:  # the parent waited for (and so reaped) both
                with pytest.raises(ProcessLookupError):
                    os.kill(pid, 0)
        finally:
            if parent.returncode is None:
                parent.kill()
                await parent.wait()
                for pid in workers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            log.close()
