"""``numbershop reconcile`` as a real subprocess against a SQLite file and the simulator.

The seeded drift is an order closed (cancelled) with its hold still pending: the user is owed
100. A dry run must list it and change nothing (every table compared row by row); --execute
must give the money back, record the run and fix nothing the second time; bad arguments exit
2 with one line; the progress bar appears on a terminal only.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core import ledger
from core.db.engine import Database
from core.db.tables import metadata, orders
from core.users import get_or_create_user

REPO = Path(__file__).resolve().parents[2]
OWED = 100


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    path = tmp_path / "shop.db"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SHOP_CURRENCY", "MARKUP_PERCENT", "BOT_TOKEN", "REDIS_URL", "STAFF_CHAT_ID")
    }
    env.update(DATABASE_URL=f"sqlite+aiosqlite:///{path}", PROVIDERS="simulator", PYTHONPATH=str(REPO))
    done = cli(env, tmp_path, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    env["_DB_PATH"] = str(path)
    env["_CWD"] = str(tmp_path)
    return env


def cli(env: dict[str, str], cwd: Path | str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "numbershop", *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def reconcile(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return cli(env, env["_CWD"], "reconcile", *argv)


def seed_closed_order_with_pending_hold(env: dict[str, str]) -> str:
    """A user with 500, and an order that says cancelled while its 100 is still held."""

    async def go() -> str:
        ledger.forget_system_accounts()  # the cache is per database; this is a fresh one
        db = Database(env["DATABASE_URL"])
        now = datetime.now(UTC)
        order_id = ledger.new_id()
        hold = ledger.derived_id("hold", order_id)
        async with db.begin() as conn:
            user = await get_or_create_user(conn, telegram_id=4242, now=now)
            await ledger.post_transfer(
                conn,
                id=ledger.new_id(),
                debit=await ledger.system_account(conn, ledger.TOPUPS),
                credit=user.wallet_account_id,
                amount=500,
                code="topup",
                now=now,
            )
            await ledger.create_hold(
                conn,
                id=hold,
                debit=user.wallet_account_id,
                credit=await ledger.system_account(conn, ledger.REVENUE),
                amount=OWED,
                order_id=order_id,
                now=now,
                timeout_at=now + timedelta(hours=1),
            )
            await conn.execute(
                orders.insert().values(
                    id=order_id,
                    user_id=user.id,
                    service="whatsapp",
                    country="GB",
                    price=OWED,
                    status="cancelled",
                    version=2,
                    hold_transfer_id=hold,
                    provider="simulator",
                    upstream_state="cancelled",
                    upstream_attempts=0,
                    can_request_another=False,
                    chat_id=4242,
                    created_at=now,
                    updated_at=now,
                    closed_at=now,
                )
            )
        await db.dispose()
        ledger.forget_system_accounts()
        return order_id

    return asyncio.run(go())


def dump(env: dict[str, str]) -> dict[str, list[tuple]]:
    with sqlite3.connect(env["_DB_PATH"]) as conn:
        return {
            t.name: conn.execute(f'SELECT * FROM "{t.name}" ORDER BY rowid').fetchall()
            for t in metadata.sorted_tables
        }


def wallet_held(env: dict[str, str]) -> int:
    with sqlite3.connect(env["_DB_PATH"]) as conn:
        return conn.execute("SELECT debits_pending FROM accounts WHERE kind = 'wallet'").fetchone()[0]


def test_clean_database_exits_zero(env):
    done = reconcile(env)
    assert done.returncode == 0, done.stderr
    assert "everything agrees" in done.stdout and done.stderr == ""


def test_dry_run_lists_the_fix_and_changes_nothing(env):
    order_id = seed_closed_order_with_pending_hold(env)
    before = dump(env)
    for argv in ((), ("--dry-run",), ("--dry-run", "--days", "7")):
        done = reconcile(env, *argv)
        assert done.returncode == 1, done.stderr  # findings remain
        assert f"order_closed_hold_not_voided [{order_id}]" in done.stdout
        assert "would fix: void the hold" in done.stdout
        assert "nothing was changed" in done.stdout
        assert done.stderr == ""  # not a terminal: no progress bar
    assert dump(env) == before
    assert wallet_held(env) == OWED


def test_json_is_one_object_and_no_progress(env):
    order_id = seed_closed_order_with_pending_hold(env)
    done = reconcile(env, "--json")
    assert done.returncode == 1 and done.stderr == ""
    assert done.stdout.count("\n") == 1
    report = json.loads(done.stdout)
    assert report["dry_run"] is True and report["run_id"] is None
    assert report["status"] == "findings" and report["remaining"] == 1
    [finding] = report["findings"]
    assert (finding["code"], finding["ref"], finding["fixed"]) == (
        "order_closed_hold_not_voided",
        order_id,
        False,
    )
    assert report["checked"]["days"] == 30


def test_execute_fixes_once_and_a_second_run_fixes_nothing(env):
    order_id = seed_closed_order_with_pending_hold(env)
    done = reconcile(env, "--execute")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fixed: void the hold" in done.stdout and "fixed 1, remaining 0" in done.stdout
    assert wallet_held(env) == 0
    after_first = dump(env)
    assert [r[1] for r in after_first["reconciliation_runs"]] == ["execute"]

    again = reconcile(env, "--execute", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["status"] == "clean" and report["findings"] == [] and report["fixed"] == 0
    after_second = dump(env)
    for table in ("transfers", "accounts", "orders", "order_events", "outbox", "audit_log"):
        assert after_second[table] == after_first[table], table
    statuses = [r[-1] for r in after_second["reconciliation_runs"]]
    assert statuses == ["fixed", "clean"]
    with sqlite3.connect(env["_DB_PATH"]) as conn:
        voids = conn.execute(
            "SELECT COUNT(*) FROM transfers WHERE kind = 'void_pending' AND order_id = ?", (order_id,)
        ).fetchone()[0]
    assert voids == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (("--days", "-3"), "the number of days cannot be negative"),
        (("--days", "soon"), "is not a whole number of days"),
        (("--dry-run", "--execute"), "not allowed with argument"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(env, argv, message):
    seed_closed_order_with_pending_hold(env)
    before = dump(env)
    done = reconcile(env, *argv)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert dump(env) == before


def _on_a_terminal(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal; returns (exit code, stdout, terminal output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "numbershop", "reconcile", *argv],
        env=env,
        cwd=env["_CWD"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    out, _ = proc.communicate(timeout=120)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_only(env):
    seed_closed_order_with_pending_hold(env)
    code, out, tty = _on_a_terminal(env)
    assert code == 1 and "would fix" in out
    assert "reconcile [" in tty and "#" in tty and "provider simulator" in tty
    code, out, tty = _on_a_terminal(env, "--json")
    assert code == 1 and json.loads(out)["remaining"] == 1
    assert "reconcile [" not in tty
