"""``numbershop run`` as a real child process, in a directory of its own.

Each process gets a fresh working directory (its ``./data/``, no ``.env`` of the repository)
and an environment stripped of every shop setting, so it runs exactly what a newcomer gets
from a clean checkout. Its output is read by two threads; waits are on a line appearing, with
a deadline — never a sleep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0
SANDBOX_URL = re.compile(r"open (http://\S+?)/ in your browser")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any shop setting (a developer's BOT_TOKEN must not leak in)."""
    names = set(Settings.model_fields) | {"SANDBOX_HOST", "SANDBOX_PORT"}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class ShopProcess:
    def __init__(self, cwd: Path, args: list[str], env: dict[str, str]) -> None:
        self.cwd = cwd
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "numbershop", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, lines: list[str]) -> None:
        for line in stream:
            with self._changed:
                lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first match of ``pattern`` in stdout+stderr, waiting for it to be printed."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = regex.search(self.output)
                if found:
                    return found
                if self.proc.poll() is not None and not any(r.is_alive() for r in self._readers):
                    raise AssertionError(
                        f"numbershop exited ({self.proc.returncode}) before "
                        f"printing {regex.pattern!r}:\n{self.output}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {regex.pattern!r} within {timeout:g}s:\n{self.output}")
                self._changed.wait(min(left, 0.5))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"numbershop did not stop within {timeout:g}s:\n{self.output}") from None
        for reader in self._readers:
            reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_shop(cwd: Path, *args: str, **env: str) -> ShopProcess:
    return ShopProcess(cwd, list(args), clean_env(**env))


@pytest.fixture
def processes() -> Iterator[list[ShopProcess]]:
    """Processes a test starts; any still running at the end are killed."""
    started: list[ShopProcess] = []
    yield started
    for proc in started:
        proc.kill()


def http(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 30.0) -> tuple[int, Any]:
    """(status, parsed JSON or text) — HTTP errors are answers, not exceptions."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            status, raw, ctype = res.status, res.read(), res.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    text = raw.decode("utf-8", "replace")
    return status, json.loads(text) if "json" in ctype else text


def control(
    base: str, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30.0
) -> Any:
    """A control API call that must succeed; returns its ``result``."""
    status, answer = http(method, base + path, body, timeout)
    assert status == 200 and answer["ok"], (status, answer)
    return answer["result"]
