"""A staff credit or debit tells the buyer through an outbox row committed with the money."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from core.db.tables import outbox
from core.errors import InsufficientFunds
from core.staff import NotAllowed, StaffMember, adjust_wallet
from core.wallets import Wallets


def _member(role: str) -> StaffMember:
    return StaffMember(1, role, role, False, datetime(2026, 1, 1), "x")


async def _rows(db) -> list:
    async with db.read() as conn:
        return (await conn.execute(select(outbox).order_by(outbox.c.id))).mappings().all()


async def test_credit_and_debit_commit_their_notice(db, clock) -> None:
    wallets = Wallets(db, clock, "USD")
    admin = _member("admin")
    change = await adjust_wallet(
        wallets, admin, "credit", 501, 1200, reason="goodwill", idempotency_key="k1", support_credit_limit=500
    )
    await adjust_wallet(
        wallets, admin, "debit", 501, 300, reason="correction", idempotency_key="k2", support_credit_limit=500
    )
    rows = await _rows(db)
    assert [(r["kind"], r["chat_id"], r["payload"]) for r in rows] == [
        ("wallet_adjusted", 501, {"amount": 1200, "direction": "credit", "balance_after": 1200}),
        ("wallet_adjusted", 501, {"amount": 300, "direction": "debit", "balance_after": 900}),
    ]
    assert rows[0]["dedupe_key"] == f"wallet:{change.transfer_id}"


async def test_retried_credit_enqueues_once(db, clock) -> None:
    wallets = Wallets(db, clock, "USD")
    admin = _member("admin")
    for _ in range(2):
        await adjust_wallet(
            wallets,
            admin,
            "credit",
            502,
            700,
            reason="goodwill",
            idempotency_key="same",
            support_credit_limit=0,
        )
    assert len(await _rows(db)) == 1
    assert (await wallets.show(502)).balance == 700


async def test_refused_changes_enqueue_nothing(db, clock) -> None:
    wallets = Wallets(db, clock, "USD")
    with pytest.raises(NotAllowed):
        await adjust_wallet(
            wallets,
            _member("support"),
            "credit",
            503,
            9999,
            reason="too much",
            idempotency_key=None,
            support_credit_limit=500,
        )
    await adjust_wallet(
        wallets,
        _member("admin"),
        "credit",
        503,
        100,
        reason="small",
        idempotency_key=None,
        support_credit_limit=0,
    )
    with pytest.raises(InsufficientFunds):
        await adjust_wallet(
            wallets,
            _member("admin"),
            "debit",
            503,
            5000,
            reason="too much",
            idempotency_key=None,
            support_credit_limit=0,
        )
    assert [r["payload"]["direction"] for r in await _rows(db)] == ["credit"]


async def test_plain_wallet_calls_stay_silent(db, clock) -> None:
    """The operator's CLI calls Wallets directly and does not message the user."""
    wallets = Wallets(db, clock, "USD")
    await wallets.credit(504, 100, reason="cli grant")
    assert await _rows(db) == []
