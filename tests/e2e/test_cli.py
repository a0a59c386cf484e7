"""The command line against a real SQLite database: every command's output, and bad input.

Commands run in-process through ``numbershop.cli.main`` (what the console script calls), with
``DATABASE_URL`` pointing at a temporary file; a few run as real subprocesses to prove the
exit codes and the absence of tracebacks end to end. Every bad-input case checks three things:
exit code 2, exactly one line on stderr, and the same row count in every table afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from core import ledger
from core.clock import FakeClock
from core.db.engine import Database
from core.db.tables import metadata, offers
from numbershop import cli
from numbershop.cli import COMMANDS, build_parser, main
from tests.integration.orders_support import ScriptedProvider, Shop

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def shop_db(tmp_path, monkeypatch) -> Path:
    """A migrated, seeded SQLite file; cwd moved so no developer .env leaks in."""
    path = tmp_path / "cli.db"
    monkeypatch.chdir(tmp_path)
    for name in ("SHOP_CURRENCY", "PROVIDERS", "MARKUP_PERCENT", "BOT_TOKEN", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    assert main(["db", "upgrade"]) == 0
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse refuses bad arguments by exiting, as the script would
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str) -> dict:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    assert out.count("\n") == 1, out  # exactly one JSON object, on one line
    obj = json.loads(out)
    assert isinstance(obj, dict)
    return obj


def row_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {
            t.name: conn.execute(f'SELECT COUNT(*) FROM "{t.name}"').fetchone()[0]
            for t in metadata.sorted_tables
        }


def money(minor: int) -> dict:
    return {"minor": minor, "formatted": f"${minor // 100}.{minor % 100:02d}"}


# ------------------------------------------------------------------------------ db


def test_db_upgrade_is_idempotent_and_reports_revision(shop_db, capsys):
    before = row_counts(shop_db)
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and "already at revision" in out
    assert row_counts(shop_db) == before  # seeding twice adds nothing
    assert before["accounts"] == len(ledger.system_rows())  # revenue, topups, adjustments and their shards
    assert before["services"] > 0 and before["countries"] > 0
    obj = run_json(capsys, "db", "upgrade")
    assert obj["from"] == obj["to"] == obj["head"]
    cur = run_json(capsys, "db", "current")
    assert cur["up_to_date"] is True and cur["current"] == cur["head"]


def test_db_upgrade_creates_a_fresh_database(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "nested" / "fresh.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")  # the short spelling works too
    code, out, _ = run(capsys, "db", "current")
    assert code == 1 and "revision none" in out
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and "upgraded from an empty database" in out
    assert row_counts(path)["accounts"] == len(ledger.system_rows())


def test_commands_migrate_a_fresh_sqlite_database_themselves(tmp_path, monkeypatch, capsys):
    """The embedded shop needs no setup: the first command brings the schema to head."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/auto.db")
    obj = run_json(capsys, "wallet", "credit", "8", "1.00", "--reason", "first ever command")
    assert obj["available"] == money(100)
    assert run_json(capsys, "db", "current")["up_to_date"] is True


# -------------------------------------------------------------------------- wallet


def test_wallet_credit_creates_user_then_show_and_debit(shop_db, capsys):
    credit = run_json(capsys, "wallet", "credit", "4242", "5.00", "--reason", "welcome bonus")
    assert credit["action"] == "credit" and credit["created"] is True
    assert credit["telegram_id"] == 4242 and isinstance(credit["user_id"], int)
    assert credit["amount"] == money(500)
    assert (credit["balance"], credit["held"], credit["available"]) == (money(500), money(0), money(500))
    assert credit["currency"] == "USD" and credit["reason"] == "welcome bonus"

    debit = run_json(capsys, "wallet", "debit", "4242", "1.25", "--reason", "correction")
    assert debit["action"] == "debit" and debit["amount"] == money(125)
    assert debit["available"] == money(375)

    show = run_json(capsys, "wallet", "show", "4242")
    assert set(show) == {"telegram_id", "user_id", "currency", "balance", "held", "available"}
    assert (show["balance"], show["held"], show["available"]) == (money(375), money(0), money(375))

    code, out, _ = run(capsys, "wallet", "show", "4242")
    assert code == 0 and "balance $3.75" in out and "available $3.75" in out
    with sqlite3.connect(shop_db) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["wallet.credit", "wallet.debit"]


def test_wallet_credit_with_idempotency_key_moves_money_once(shop_db, capsys):
    args = ("wallet", "credit", "77", "2.50", "--reason", "support ticket 9", "--idempotency-key", "ticket-9")
    first = run_json(capsys, *args)
    before = row_counts(shop_db)
    again = run_json(capsys, *args)
    assert first["created"] is True and again["created"] is False
    assert again["transfer_id"] == first["transfer_id"]
    assert again["balance"] == money(250)
    assert row_counts(shop_db) == before
    code, out, _ = run(capsys, *args)
    assert code == 0 and "already done earlier" in out


def test_wallet_human_output(shop_db, capsys):
    code, out, err = run(capsys, "wallet", "credit", "5", "10", "--reason", "r")
    assert code == 0 and err == ""
    assert out.startswith("$10.00 credited to user 5") and "available $10.00" in out


# -------------------------------------------------------------------------- ledger


def test_ledger_check_ok(shop_db, capsys):
    run_json(capsys, "wallet", "credit", "1", "3.00", "--reason", "r")
    code, out, _ = run(capsys, "ledger", "check")
    assert code == 0 and "ledger ok" in out
    obj = run_json(capsys, "ledger", "check")
    assert obj["ok"] is True and obj["violations"] == [] and "checked_at" in obj


def test_ledger_check_reports_violations_with_exit_1(shop_db, capsys):
    run_json(capsys, "wallet", "credit", "1", "3.00", "--reason", "r")
    with sqlite3.connect(shop_db) as conn:  # a hand-edited balance: money from nowhere
        conn.execute("UPDATE accounts SET credits_posted = credits_posted + 100 WHERE kind = 'wallet'")
    code, out, _ = run(capsys, "ledger", "check", "--json")
    assert code == 1
    obj = json.loads(out)
    assert obj["ok"] is False
    invariants = {v["invariant"] for v in obj["violations"]}
    assert {1, 2} <= invariants
    assert all(set(v) == {"invariant", "code", "message", "ref"} for v in obj["violations"])
    code, out, _ = run(capsys, "ledger", "check")
    assert code == 1 and "violation" in out and "invariant 1" in out


# -------------------------------------------------------------------------- orders


async def _make_orders(path: Path) -> dict[str, str]:
    """Three real orders through the order service: completed, cancelled, waiting."""
    db = Database(f"sqlite+aiosqlite:///{path}")
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    provider = ScriptedProvider("simulator", clock, cost=50)
    shop = Shop(db, clock, {"simulator": provider})
    try:
        async with db.begin() as conn:
            await conn.execute(
                insert(offers).values(
                    provider="simulator",
                    service="whatsapp",
                    country="GB",
                    cost=50,
                    stock=10,
                    updated_at=clock.now(),
                )
            )
        alice = await shop.user(1001, funds=1000)
        bob = await shop.user(1002, funds=1000)
        made = {}
        for name, user in (("completed", alice), ("cancelled", alice), ("waiting", bob)):
            quote = await shop.quote(user.id, price=120)
            order = await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key=f"k-{name}")
            made[name] = order.id
            clock.advance(1)
        completed = await shop.orders.get_order(made["completed"])
        provider.deliver(completed.activation_id, "123456", "Your WhatsApp code is 123456")
        assert (await shop.orders.check_now(completed.id)).status == "completed"
        await shop.orders.cancel(made["cancelled"], user_id=alice.id)
        return made
    finally:
        await db.dispose()


@pytest.fixture
def orders(shop_db) -> dict[str, str]:
    return asyncio.run(_make_orders(shop_db))


def test_orders_list_filters_and_shape(orders, capsys):
    everything = run_json(capsys, "orders", "list")
    assert everything["count"] == 3
    assert [o["id"] for o in everything["orders"]] == [
        orders["waiting"],
        orders["cancelled"],
        orders["completed"],
    ]  # newest first
    first = everything["orders"][0]
    assert first["price"] == money(120) and first["cost"] == money(50)
    assert {"id", "status", "telegram_id", "service", "country", "phone", "created_at"} <= set(first)

    alice = run_json(capsys, "orders", "list", "--user", "1001")
    assert {o["id"] for o in alice["orders"]} == {orders["completed"], orders["cancelled"]}
    done = run_json(capsys, "orders", "list", "--status", "completed")
    assert [o["id"] for o in done["orders"]] == [orders["completed"]]
    assert run_json(capsys, "orders", "list", "--limit", "1")["count"] == 1
    assert run_json(capsys, "orders", "list", "--status", "refunded")["orders"] == []

    code, out, _ = run(capsys, "orders", "list", "--user", "1002")
    assert code == 0 and orders["waiting"] in out and "waiting" in out


def test_orders_show_has_events_messages_and_transfers(orders, capsys):
    obj = run_json(capsys, "orders", "show", orders["completed"])
    assert set(obj) == {"order", "events", "messages", "transfers"}
    assert obj["order"]["status"] == "completed" and obj["order"]["code"] == "123456"
    assert [m["code"] for m in obj["messages"]] == ["123456"]
    assert obj["messages"][0]["charged"] is True
    kinds = sorted(t["kind"] for t in obj["transfers"])
    assert kinds == ["pending", "post_pending"]
    assert all(t["amount"] == money(120) for t in obj["transfers"])
    assert [e["to_status"] for e in obj["events"]][-1] == "completed"

    cancelled = run_json(capsys, "orders", "show", orders["cancelled"])
    assert sorted(t["kind"] for t in cancelled["transfers"]) == ["pending", "void_pending"]

    code, out, _ = run(capsys, "orders", "show", orders["completed"])
    assert code == 0 and "completed" in out and "123456" in out and "transfers:" in out


def test_ledger_check_ok_with_real_orders(orders, capsys):
    assert run_json(capsys, "ledger", "check")["ok"] is True


# ----------------------------------------------------------------------- bad input

BAD_INPUT = [
    pytest.param(["wallet", "show", "999"], "no user", id="show-unknown-user"),
    pytest.param(["wallet", "show", "abc"], "not a Telegram user id", id="show-malformed-id"),
    pytest.param(["wallet", "show", "0"], "not a Telegram user id", id="show-zero-id"),
    pytest.param(["wallet", "credit", "42", "-5.00", "--reason", "x"], "not an amount", id="credit-negative"),
    pytest.param(
        ["wallet", "credit", "42", "5.001", "--reason", "x"], "decimal places", id="credit-too-precise"
    ),
    pytest.param(["wallet", "credit", "42", "five", "--reason", "x"], "not an amount", id="credit-malformed"),
    pytest.param(["wallet", "credit", "42", "0", "--reason", "x"], "greater than zero", id="credit-zero"),
    pytest.param(["wallet", "credit", "42", "5.00"], "--reason", id="credit-missing-reason"),
    pytest.param(["wallet", "credit", "42", "5.00", "--reason", "  "], "--reason", id="credit-blank-reason"),
    pytest.param(
        ["wallet", "credit", "42", "5", "--reason", "x", "--idempotency-key", " "],
        "idempotency",
        id="credit-blank-key",
    ),
    pytest.param(
        ["wallet", "credit", "42", "5", "--reason", "x", "--idempotency-key", "used"],
        "idempotency key",
        id="credit-key-used-by-debit",
    ),
    pytest.param(
        ["wallet", "debit", "42", "500.00", "--reason", "x"], "available", id="debit-over-available"
    ),
    pytest.param(["wallet", "debit", "999", "1.00", "--reason", "x"], "no user", id="debit-unknown-user"),
    pytest.param(["wallet", "debit", "42", "-1", "--reason", "x"], "not an amount", id="debit-negative"),
    pytest.param(["wallet", "frobnicate"], "invalid choice", id="wallet-unknown-action"),
    pytest.param(["wallet"], "required", id="wallet-no-action"),
    pytest.param(["orders", "show", "no-such-order"], "no order", id="orders-show-unknown"),
    pytest.param(["orders", "list", "--status", "bogus"], "invalid choice", id="orders-unknown-status"),
    pytest.param(["orders", "list", "--user", "999"], "no user", id="orders-unknown-user"),
    pytest.param(["orders", "list", "--limit", "0"], "limit", id="orders-limit-zero"),
    pytest.param(["orders", "list", "--limit", "x"], "whole number", id="orders-limit-malformed"),
    pytest.param(["ledger", "check", "--grace-seconds", "-1"], "negative", id="ledger-negative-grace"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_INPUT)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(shop_db, capsys, argv, expected):
    assert main(["wallet", "credit", "42", "3.00", "--reason", "setup"]) == 0
    assert main(["wallet", "debit", "42", "0.50", "--reason", "setup", "--idempotency-key", "used"]) == 0
    before = row_counts(shop_db)
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err and out == ""
    assert row_counts(shop_db) == before


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SHOP_CURRENCY", "dollars"),
        ("PROVIDERS", "nope"),
        ("MARKUP_PERCENT", "lots"),
        ("DATABASE_URL", "mysql://x/y"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_bad_configuration_exits_2_naming_the_variable(shop_db, capsys, monkeypatch, name, value):
    before = row_counts(shop_db)
    monkeypatch.setenv(name, value)
    code, out, err = run(capsys, "wallet", "credit", "42", "1.00", "--reason", "x")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], err
    assert row_counts(shop_db) == before


@pytest.mark.parametrize(
    ("level", "verbose", "root", "per_event"),
    [
        ("info", False, logging.INFO, logging.WARNING),
        ("ERROR", False, logging.ERROR, logging.ERROR),
        ("info", True, logging.DEBUG, logging.NOTSET),
    ],
)
def test_log_level_and_the_per_event_lines(monkeypatch, level, verbose, root, per_event):
    """LOG_LEVEL sets the root level; the line per update and per provider request shows
    only with -v."""
    monkeypatch.setenv("LOG_LEVEL", level)
    logger = logging.getLogger()
    saved = logger.handlers[:], logger.level
    saved_per_event = {name: logging.getLogger(name).level for name in cli.PER_EVENT_LOGGERS}
    logger.handlers = []
    try:
        cli.configure_logging(verbose=verbose)
        assert logger.level == root
        for name in cli.PER_EVENT_LOGGERS:
            assert logging.getLogger(name).level == per_event, name
    finally:
        logger.handlers, logger.level = saved[0], saved[1]
        for name, was in saved_per_event.items():
            logging.getLogger(name).setLevel(was)


def test_unusable_database_is_one_line(tmp_path, monkeypatch, capsys):
    """A database that cannot be opened is one line, not a driver traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-a-dir").write_text("x")
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/not-a-dir/db.sqlite")
    code, out, err = run(capsys, "wallet", "show", "1")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unreachable_postgres_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:secret@127.0.0.1:1/nowhere")
    for argv in (["wallet", "show", "1"], ["db", "upgrade"], ["orders", "list"]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "cannot use the database" in lines[0], err
        assert "secret" not in err  # the password is masked


# ---------------------------------------------------------------------- subprocess


def _subprocess(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SHOP_CURRENCY", "PROVIDERS"}}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/sub.db"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "numbershop", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_subprocess_success_and_bad_input(tmp_path):
    up = _subprocess(tmp_path, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    ok = _subprocess(tmp_path, "wallet", "credit", "9", "1.50", "--reason", "demo", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["available"] == money(150)
    before = row_counts(tmp_path / "sub.db")
    bad = _subprocess(tmp_path, "wallet", "debit", "9", "2.00", "--reason", "too much")
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert row_counts(tmp_path / "sub.db") == before
    missing = _subprocess(tmp_path, "orders", "show", "nope")
    assert missing.returncode == 2 and missing.stderr.strip().startswith("numbershop: error:")


HEAVY = ("aiogram", "litestar", "sqlalchemy", "sqlalchemy.ext.asyncio", "apscheduler", "pydantic")
LOADED_AFTER_MAIN = """
import contextlib, json, sys
from numbershop import cli
from numbershop.cli import COMMANDS, build_parser, main
with contextlib.redirect_stdout(sys.stderr), contextlib.suppress(SystemExit):
    main(sys.argv[1:])
print(json.dumps([m for m in {heavy!r} if m in sys.modules]))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["-v", "--help"],
        ["db", "--help"],
        ["-v", "db", "--help"],
        ["nosuch"],
        [],
    ],
)
def test_help_and_bad_commands_load_no_application(tmp_path, argv):
    """Only the command being run is imported: help and typos stay instant."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-c", LOADED_AFTER_MAIN.format(heavy=HEAVY), *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    if argv == ["nosuch"]:
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "invalid choice: 'nosuch'" in lines[0]


def test_every_command_is_listed_with_the_line_its_module_registers():
    full = build_parser()  # every command module, imported in full
    (group,) = (a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    registered = {a.dest: a.help for a in group._choices_actions}
    assert registered == COMMANDS
    assert list(group.choices) == list(COMMANDS)


def test_a_command_is_parsed_in_full_when_named_after_top_level_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["-v", "db"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "numbershop db: error: the following arguments are required: ACTION"
    ]


# ---------------------------------------------------------------------- postgresql


@pytest.fixture
def pg_url(monkeypatch, tmp_path):
    """A private, empty PostgreSQL database for this test, dropped afterwards."""
    base = os.environ.get("NUMBERSHOP_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("PostgreSQL variant skipped: set NUMBERSHOP_TEST_POSTGRES_URL to run it")
    base = "postgresql+asyncpg://" + base.split("://", 1)[1]
    name = f"numbershop_cli_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        eng = create_async_engine(base, isolation_level="AUTOCOMMIT")
        try:
            async with eng.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await eng.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    monkeypatch.chdir(tmp_path)
    url = base.rsplit("/", 1)[0] + "/" + name
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_postgres_needs_an_explicit_upgrade_then_works(pg_url, capsys):
    code, out, err = run(capsys, "wallet", "show", "1")
    assert code == 2 and out == ""
    assert "run `numbershop db upgrade`" in err and len(err.strip().splitlines()) == 1
    assert run(capsys, "db", "upgrade")[0] == 0
    credit = run_json(capsys, "wallet", "credit", "31", "4.00", "--reason", "pg", "--idempotency-key", "pg-1")
    again = run_json(capsys, "wallet", "credit", "31", "4.00", "--reason", "pg", "--idempotency-key", "pg-1")
    assert credit["created"] and not again["created"] and again["available"] == money(400)
    code, _, err = run(capsys, "wallet", "debit", "31", "4.01", "--reason", "too much")
    assert code == 2 and "available" in err
    assert run_json(capsys, "ledger", "check")["ok"] is True
    assert run_json(capsys, "orders", "list", "--user", "31")["orders"] == []
