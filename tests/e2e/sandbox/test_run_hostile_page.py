"""``numbershop run``'s sandbox against what a hostile page in the same browser can send: a
rebound Host name, a NaN long poll. The page's config carries no password, and the process
still stops in time."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.sandbox.conftest import SANDBOX_URL, http, run_shop

pytestmark = pytest.mark.slow


def test_a_hostile_page_gets_no_password_and_cannot_wedge_the_sandbox(tmp_path: Path, processes) -> None:
    proc = run_shop(tmp_path, "run", "--port", "0", "--admin-port", "0", "--code-delay", "off")
    processes.append(proc)
    base = proc.wait_for(SANDBOX_URL).group(1)
    login = proc.wait_for(r"dashboard +http://\S+ \(log in as sandbox / (\S+)\)")
    password = login.group(1)

    status, config = http("GET", base + "/sandbox/api/config")
    assert status == 200 and config["result"]["dashboard"]["username"] == "sandbox"
    assert password not in str(config) and "password" not in config["result"]["dashboard"]

    rebound = urllib.request.Request(base + "/sandbox/api/config", headers={"Host": "rebound.example"})
    try:
        urllib.request.urlopen(rebound, timeout=10)
        raise AssertionError("a rebound Host name was served")
    except urllib.error.HTTPError as exc:
        assert exc.code == 421

    token = "8088000001:numbershop-sandbox"
    for timeout in ("nan", "inf"):
        started = time.monotonic()
        status, answer = http("GET", f"{base}/bot{token}/getUpdates?timeout={timeout}", timeout=5)
        assert status == 400 and answer["error_code"] == 400, answer
        assert time.monotonic() - started < 5

    stopped = time.monotonic()
    assert proc.stop(signal.SIGTERM) == 0, proc.output
    assert time.monotonic() - stopped < 30
    assert re.search(r"stopped", "".join(proc.stderr).splitlines()[-1]), proc.output
