"""`numbershop admin run` serves the dashboard and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_admin_run_serves_and_stops(tmp_path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/shop.db",
        "ADMIN_SECRET_KEY": "x" * 32,
    }
    env.pop("REDIS_URL", None)
    cli = [sys.executable, "-m", "numbershop"]
    subprocess.run(
        [*cli, "db", "upgrade"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=120
    )
    added = subprocess.run(
        [*cli, "staff", "add", "root", "--role", "admin"],
        cwd=tmp_path,
        env=env,
        input="a good password\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    port = _free_port()
    proc = subprocess.Popen(
        [*cli, "admin", "run", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).text == "ok":
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the dashboard did not come up"
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        login = httpx.get(f"http://127.0.0.1:{port}/login")
        assert login.status_code == 200 and "numbershop staff" in login.text
        assert httpx.get(f"http://127.0.0.1:{port}/api/users").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "Traceback" not in out


def test_admin_run_bad_port_is_one_line(tmp_path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "numbershop", "admin", "run", "--port", "70000"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x.db"},
    )
    assert r.returncode == 2 and "not a TCP port" in r.stderr and "Traceback" not in r.stderr
