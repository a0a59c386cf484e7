"""``numbershop run`` as a process: the sandbox with nothing configured, the shop with a token,
clean stops on SIGTERM and SIGINT, and one line (exit 2) for a port that is taken."""

from __future__ import annotations

import contextlib
import itertools
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.sandbox.conftest import (
    SANDBOX_URL,
    ShopProcess,
    clean_env,
    control,
    http,
    run_shop,
)

pytestmark = pytest.mark.slow

DASHBOARD_URL = re.compile(r"dashboard +(http://\S+?)/")


def assert_clean_exit(proc: ShopProcess, code: int) -> None:
    err = "".join(proc.stderr)
    assert code == 0, proc.output
    assert "Traceback" not in err, err
    assert "stopped" in err.splitlines()[-1], err


def start_chat(base: str, bot: int, user: int, text: str = "/start") -> dict:
    """A user writes; returns the chat once the bot has replied to that update."""
    sent = control(
        base, "POST", f"/control/bots/{bot}/users/{user}/messages", {"text": text, "first_name": "Tess"}
    )
    return control(
        base, "GET", f"/control/bots/{bot}/updates/{sent['update_id']}/reply?timeout=30", timeout=40
    )


def test_sandbox_serves_the_page_and_the_bot_answers_then_stops_cleanly(tmp_path: Path, processes) -> None:
    # A configured DATABASE_URL (say, the real shop's) is left alone by the sandbox.
    proc = run_shop(
        tmp_path,
        "run",
        "--port",
        "0",
        "--admin-port",
        "0",
        "--code-delay",
        "off",
        DATABASE_URL="sqlite:///shop.db",
    )
    processes.append(proc)
    base = proc.wait_for(SANDBOX_URL).group(1)
    assert "DATABASE_URL is not used" in proc.output
    dashboard = proc.wait_for(DASHBOARD_URL).group(1)
    for component in ("database", "catalogue", "sandbox", "sender", "bot", "scheduler", "dashboard"):
        assert re.search(rf"numbershop\.run: {component} ", proc.output), (component, proc.output)

    status, page = http("GET", base + "/")
    assert status == 200 and "numbershop sandbox" in page
    status, script = http("GET", base + "/sandbox/static/sandbox.js")
    assert status == 200 and "/control/bots/" in script
    assert control(base, "GET", "/control/health")["bots"] == 1
    bot = control(base, "GET", "/sandbox/api/config")["bot"]
    assert bot["username"] == "numbershop_sandbox_bot"

    chat = start_chat(base, bot["id"], 4321)
    greeting = chat["messages"][-1]
    assert greeting["sender"] == "bot"
    assert greeting["text"].startswith("👋 Hi, Tess!"), greeting
    assert any("Buy number" in b["text"] for row in greeting["keyboard"] for b in row)

    status, health = http("GET", dashboard + "/healthz")
    assert status == 200, health
    # Cross-site writes to the control API are refused; the page's own origin is fine.
    status, refused = http_with_origin(
        base + f"/control/bots/{bot['id']}/users/4321/messages", "http://evil.example", {"text": "/start"}
    )
    assert status == 403, refused

    # Users keep writing while SIGTERM arrives: every handler the bot started finishes
    # before the Bot API, the sender and the database go away — none dies half-way.
    with chatting_users(base, bot["id"], range(5000, 5006)) as replies:
        deadline = time.monotonic() + 30
        while sum(replies.values()) < 12:  # the bot is busy answering them
            assert time.monotonic() < deadline, f"the bot did not answer: {replies}"
            time.sleep(0.05)
        assert_clean_exit(proc, proc.stop(signal.SIGTERM))
    # The sandbox kept its books in its own database, and they balance.
    assert (tmp_path / "data" / "sandbox.db").exists()
    assert not (tmp_path / "shop.db").exists() and not (tmp_path / "data" / "numbershop.db").exists()
    check = subprocess.run(
        [sys.executable, "-m", "numbershop", "ledger", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(DATABASE_URL="sqlite:///data/sandbox.db"),
    )
    assert check.returncode == 0, check.stdout + check.stderr


@contextlib.contextmanager
def chatting_users(base: str, bot: int, users: range) -> Iterator[Counter[int]]:
    """Threads that keep writing to the bot until the block ends; yields replies per user."""
    stop = threading.Event()
    replies: Counter[int] = Counter()

    def chat(user: int) -> None:
        texts = itertools.cycle(["/start", "/balance", "/buy whatsapp", "/orders"])
        while not stop.is_set():
            try:
                status, sent = http(
                    "POST",
                    f"{base}/control/bots/{bot}/users/{user}/messages",
                    {"text": next(texts)},
                    timeout=5,
                )
                if status != 200:
                    return
                status, _ = http(
                    "GET",
                    f"{base}/control/bots/{bot}/updates/{sent['result']['update_id']}/reply?timeout=5",
                    timeout=10,
                )
                if status == 200:
                    replies[user] += 1
            except OSError:  # the server went away: the shop is stopping
                return

    threads = [threading.Thread(target=chat, args=(u,), daemon=True) for u in users]
    for thread in threads:
        thread.start()
    try:
        yield replies
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)


def http_with_origin(url: str, origin: str, body: dict) -> tuple[int, object]:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Origin": origin},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_with_a_token_the_shop_polls_the_configured_bot_api_and_stops_on_ctrl_c(
    tmp_path: Path, processes
) -> None:
    emulator = run_shop(tmp_path, "emulator", "serve", "--port", "0")
    processes.append(emulator)
    api = emulator.wait_for(r"Bot API at (http://\S+?)/bot").group(1)
    token = "5550001:run-test-token"
    shop_dir = tmp_path / "shop"
    shop_dir.mkdir()
    proc = ShopProcess(
        shop_dir, ["run", "--admin-port", "0"], clean_env(BOT_TOKEN=token, TELEGRAM_API_URL=api)
    )
    processes.append(proc)
    proc.wait_for(r"numbershop\.run: dashboard ")
    assert "sandbox" not in "".join(proc.stdout)
    assert re.search(rf"bot +@\S+ long polling {re.escape(api)}", proc.output), proc.output

    chat = start_chat(api, 5550001, 777)
    assert chat["messages"][-1]["text"].startswith("👋 Hi, Tess!")
    assert_clean_exit(proc, proc.stop(signal.SIGINT))
    assert (shop_dir / "data" / "numbershop.db").exists()
    emulator.stop()


def test_a_taken_port_is_one_line_and_exit_2(tmp_path: Path, processes) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_shop(tmp_path, "run", "--port", str(port), "--no-admin")
        processes.append(proc)
        code = proc.proc.wait(60)
        proc.stop()
    err = "".join(proc.stderr)
    assert code == 2, proc.output
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err, err
    assert not (tmp_path / "data").exists()  # nothing was started or written
