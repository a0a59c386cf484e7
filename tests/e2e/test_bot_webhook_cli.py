"""``numbershop bot run --webhook [--workers N]``: what it refuses, with exit 2 and one line,
before touching anything (settings are checked before the database is opened)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from numbershop.cli import main

REPO = Path(__file__).resolve().parents[2]
TOKEN = "777001:numbershop-cli-test"
WEBHOOK_ENV = ("WEBHOOK_URL", "WEBHOOK_SECRET", "WEBHOOK_HOST", "WEBHOOK_PORT",
               "WEBHOOK_MAX_CONNECTIONS", "REDIS_URL", "DATABASE_URL", "BOT_TOKEN")


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in WEBHOOK_ENV}
    env.update(BOT_TOKEN=TOKEN, DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/shop.db",
               WEBHOOK_URL="https://shop.example/telegram", WEBHOOK_SECRET="s3cret")
    env.update(values)
    return env


def _run(tmp_path: Path, *argv: str, **values: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "numbershop", "bot", "run", *argv],
                          cwd=tmp_path, env=_env(tmp_path, **values), capture_output=True,
                          text=True, timeout=60, check=False)


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


@pytest.mark.parametrize(("argv", "env", "named"), [
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
])
def test_bad_webhook_settings_exit_2_naming_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str], env: dict[str, str], named: str,
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
