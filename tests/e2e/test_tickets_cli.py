"""``numbershop tickets``: list, show, resolve with a refund, reject with a message; repeats
change nothing; bad input exits 2 with one line and writes nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core import ledger, tickets
from core.clock import FakeClock
from core.db.engine import Database
from core.users import find_user
from tests.e2e.test_cli import money, orders, row_counts, run, run_json, shop_db  # noqa: F401  (fixtures)


async def _open(path: Path, order_id: str, telegram_id: int) -> int:
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.read() as conn:
            user = await find_user(conn, telegram_id)
        assert user is not None
        made = await tickets.open_ticket(db, FakeClock(datetime.now(UTC)), order_id=order_id, user_id=user.id)
        return made.id
    finally:
        await db.dispose()


async def _balance(path: Path, telegram_id: int) -> int:
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.read() as conn:
            user = await find_user(conn, telegram_id)
            assert user is not None
            return (await ledger.balance_of(conn, user.wallet_account_id)).balance
    finally:
        await db.dispose()


@pytest.fixture
def ticket(shop_db, orders) -> int:  # noqa: F811
    return asyncio.run(_open(shop_db, orders["completed"], 1001))


def test_list_show_and_resolve_refunds_once(shop_db, orders, ticket, capsys):  # noqa: F811
    before = asyncio.run(_balance(shop_db, 1001))
    listed = run_json(capsys, "tickets", "list")
    assert [(t["id"], t["state"], t["order_id"]) for t in listed["tickets"]] == [
        (ticket, "open", orders["completed"])
    ]
    assert listed["tickets"][0]["price"] == money(120)
    shown = run_json(capsys, "tickets", "show", str(ticket))
    assert shown["ticket"]["order_status"] == "completed"

    code, out, err = run(capsys, "tickets", "resolve", f"#{ticket}", "--note", "Sorry about that.")
    assert code == 0, err
    assert out == f"ticket #{ticket} resolved: $1.20 refunded to the buyer\n"
    assert asyncio.run(_balance(shop_db, 1001)) == before + 120
    again = run_json(capsys, "tickets", "resolve", str(ticket))
    assert again["changed"] is False and again["ticket"]["state"] == "resolved"
    assert asyncio.run(_balance(shop_db, 1001)) == before + 120
    assert run_json(capsys, "orders", "show", orders["completed"])["order"]["status"] == "refunded"


def test_reject_then_resolve_is_refused(shop_db, orders, ticket, capsys):  # noqa: F811
    before = asyncio.run(_balance(shop_db, 1001))
    out = run_json(capsys, "tickets", "reject", str(ticket), "--message", "The code was accepted.")
    assert out["changed"] is True and out["ticket"]["staff_note"] == "The code was accepted."
    counts = row_counts(shop_db)
    code, out_, err = run(capsys, "tickets", "resolve", str(ticket))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "rejected" in err
    assert row_counts(shop_db) == counts
    assert asyncio.run(_balance(shop_db, 1001)) == before


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["tickets", "show", "999"], "no ticket"),
        (["tickets", "show", "abc"], "not a ticket number"),
        (["tickets", "resolve", "999"], "no ticket"),
        (["tickets", "reject", "1"], "required"),
        (["tickets", "reject", "1", "--message", "   "], "message to the buyer"),
        (["tickets", "list", "--state", "bogus"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(shop_db, orders, ticket, capsys, argv, expected):  # noqa: F811
    before = row_counts(shop_db)
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err
    assert out == "" and row_counts(shop_db) == before
