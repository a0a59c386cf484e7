"""The invariant checker: silent on sound books, and each deliberate corruption is named.

Each corruption is raw SQL on a ledger built through the real services, so the checker is
proven against the states it exists to catch, not against its own construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import text

from core import ledger
from core.db.tables import orders
from core.invariants import Violation, check_invariants
from core.users import get_or_create_user

STATUSES = ("reserving", "waiting", "completed", "cancelled", "expired", "failed", "refunded")
PRICE = 100


@dataclass
class Books:
    wallet: int
    other_wallet: int
    revenue: int
    orders: dict[str, str]  # status -> order id
    holds: dict[str, str]  # status -> hold transfer id


async def _build(db, clock) -> Books:
    """Two funded users and one order in every status, each with the ledger state it implies."""
    now = clock.now()
    async with db.begin() as conn:
        user = await get_or_create_user(conn, telegram_id=1001, username="alice", now=now)
        other = await get_or_create_user(conn, telegram_id=1002, username="bob", now=now)
        revenue = await ledger.system_account(conn, ledger.REVENUE)
        topups = await ledger.system_account(conn, ledger.TOPUPS)
        for u in (user, other):
            await ledger.post_transfer(
                conn,
                id=ledger.new_id(),
                debit=topups,
                credit=u.wallet_account_id,
                amount=5000,
                code="topup",
                now=now,
            )
        order_ids, hold_ids = {}, {}
        for status in STATUSES:
            oid, hid = f"order-{status}", ledger.derived_id("hold", status)
            await ledger.create_hold(
                conn,
                id=hid,
                debit=user.wallet_account_id,
                credit=revenue,
                amount=PRICE,
                timeout_at=now + timedelta(minutes=30),
                now=now,
                order_id=oid,
            )
            await conn.execute(
                orders.insert().values(
                    id=oid,
                    user_id=user.id,
                    service="whatsapp",
                    country="GB",
                    price=PRICE,
                    status=status,
                    version=1,
                    hold_transfer_id=hid,
                    upstream_state="none",
                    upstream_attempts=0,
                    can_request_another=False,
                    created_at=now,
                    updated_at=now,
                )
            )
            if status in ("completed", "refunded"):
                await ledger.capture_hold(conn, hid, now)
            elif status in ("cancelled", "expired", "failed"):
                await ledger.void_hold(conn, hid, now)
            if status == "refunded":
                await ledger.post_transfer(
                    conn,
                    id=ledger.derived_id("refund", oid),
                    debit=revenue,
                    credit=user.wallet_account_id,
                    amount=PRICE,
                    code="refund",
                    order_id=oid,
                    now=now,
                )
            order_ids[status], hold_ids[status] = oid, hid
    return Books(user.wallet_account_id, other.wallet_account_id, revenue, order_ids, hold_ids)


async def _sql(db, sql: str, **params) -> None:
    async with db.begin() as conn:
        result = await conn.execute(text(sql), params)
        assert result.rowcount != 0, f"corruption matched no row: {sql}"


def _codes(found: list[Violation]) -> set[tuple[int, str]]:
    return {(v.invariant, v.code) for v in found}


async def test_empty_books_are_clean(db, clock):
    assert await check_invariants(db, clock.now()) == []


async def test_sound_books_with_every_order_status_are_clean(db, clock):
    await _build(db, clock)
    assert await check_invariants(db, clock.now()) == []
    # Still clean just inside the grace period after every open hold's timeout.
    clock.advance(minutes=30, seconds=119)
    assert await check_invariants(db, clock.now(), grace_seconds=120) == []


async def test_violation_is_a_plain_record(db, clock):
    books = await _build(db, clock)
    await _sql(
        db, "UPDATE accounts SET credits_posted = credits_posted + 7 WHERE id = :id", id=books.other_wallet
    )
    found = await check_invariants(db, clock.now())
    sums = [v for v in found if v.code == "account_sums_mismatch"]
    assert sums == [Violation(2, "account_sums_mismatch", sums[0].message, str(books.other_wallet))]
    assert "credits_posted is 5007 but transfers sum to 5000" in sums[0].message


# Invariant 1 -------------------------------------------------------------------------------


async def test_global_posted_imbalance(db, clock):
    books = await _build(db, clock)
    await _sql(db, "UPDATE accounts SET credits_posted = credits_posted + 5 WHERE id = :id", id=books.wallet)
    found = _codes(await check_invariants(db, clock.now()))
    assert (1, "global_posted_unbalanced") in found
    assert (1, "global_pending_unbalanced") not in found
    assert (2, "account_sums_mismatch") in found


async def test_global_pending_imbalance(db, clock):
    books = await _build(db, clock)
    await _sql(
        db, "UPDATE accounts SET credits_pending = credits_pending + 5 WHERE id = :id", id=books.revenue
    )
    found = _codes(await check_invariants(db, clock.now()))
    assert (1, "global_pending_unbalanced") in found
    assert (1, "global_posted_unbalanced") not in found


# Invariant 2 -------------------------------------------------------------------------------


async def test_balanced_cache_drift_is_caught_per_account(db, clock):
    """Moving 10 between two wallets keeps the global sums equal; only invariant 2 sees it."""
    books = await _build(db, clock)
    await _sql(db, "UPDATE accounts SET credits_posted = credits_posted - 10 WHERE id = :id", id=books.wallet)
    await _sql(
        db, "UPDATE accounts SET credits_posted = credits_posted + 10 WHERE id = :id", id=books.other_wallet
    )
    found = await check_invariants(db, clock.now())
    assert {(v.invariant, v.code, v.ref) for v in found} == {
        (2, "account_sums_mismatch", str(books.wallet)),
        (2, "account_sums_mismatch", str(books.other_wallet)),
    }


async def test_transfer_without_account_effect(db, clock):
    books = await _build(db, clock)
    await _sql(
        db,
        "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount,"
        " code, created_at) VALUES ('ghost', 'posted', :d, :c, 42, 'adjustment', :t)",
        d=books.revenue,
        c=books.other_wallet,
        t=clock.now().replace(tzinfo=None),
    )
    found = await check_invariants(db, clock.now())
    assert {v.ref for v in found if v.code == "account_sums_mismatch"} == {
        str(books.revenue),
        str(books.other_wallet),
    }
    assert {v.invariant for v in found} == {2}


async def test_pending_column_that_ignores_a_void(db, clock):
    books = await _build(db, clock)
    # The cancelled order's hold was voided, but the wallet still counts it as held.
    await _sql(
        db,
        "UPDATE accounts SET debits_pending = debits_pending + :p WHERE id = :id",
        p=PRICE,
        id=books.wallet,
    )
    await _sql(
        db,
        "UPDATE accounts SET credits_pending = credits_pending + :p WHERE id = :id",
        p=PRICE,
        id=books.revenue,
    )
    found = await check_invariants(db, clock.now())
    assert {(v.code, v.ref) for v in found} == {
        ("account_sums_mismatch", str(books.wallet)),
        ("account_sums_mismatch", str(books.revenue)),
    }


# Invariant 3 -------------------------------------------------------------------------------


async def test_overdrawn_wallet(db, clock):
    books = await _build(db, clock)
    await _sql(
        db, "UPDATE accounts SET debits_posted = debits_posted + 6000 WHERE id = :id", id=books.other_wallet
    )
    found = await check_invariants(db, clock.now())
    assert [(v.invariant, v.ref) for v in found if v.code == "wallet_overdrawn"] == [
        (3, str(books.other_wallet))
    ]


async def test_overdrawn_by_holds(db, clock):
    books = await _build(db, clock)
    await _sql(db, "UPDATE accounts SET debits_pending = 5001 WHERE id = :id", id=books.other_wallet)
    assert (3, "wallet_overdrawn") in _codes(await check_invariants(db, clock.now()))


async def test_wallet_without_its_guard(db, clock):
    books = await _build(db, clock)
    await _sql(
        db,
        "UPDATE accounts SET debits_must_not_exceed_credits = :f WHERE id = :id",
        f=False,
        id=books.other_wallet,
    )
    found = await check_invariants(db, clock.now())
    assert [(v.invariant, v.code, v.ref) for v in found] == [(3, "wallet_unguarded", str(books.other_wallet))]


# Invariant 4 -------------------------------------------------------------------------------


async def test_hold_overdue_only_after_grace(db, clock):
    books = await _build(db, clock)
    clock.advance(minutes=30, seconds=121)
    found = await check_invariants(db, clock.now(), grace_seconds=120)
    overdue = {v.ref for v in found if v.code == "hold_overdue"}
    assert overdue == {books.holds["reserving"], books.holds["waiting"]}
    assert {v.invariant for v in found} == {4}
    assert await check_invariants(db, clock.now(), grace_seconds=3600) == []


async def test_hold_without_timeout(db, clock):
    books = await _build(db, clock)
    await _sql(db, "UPDATE transfers SET timeout_at = NULL WHERE id = :id", id=books.holds["waiting"])
    found = await check_invariants(db, clock.now())
    assert [(v.invariant, v.code, v.ref) for v in found] == [
        (4, "hold_without_timeout", books.holds["waiting"])
    ]


async def test_resolution_that_disagrees_with_its_hold(db, clock):
    books = await _build(db, clock)
    await _sql(
        db, "UPDATE transfers SET amount = amount + 1 WHERE pending_id = :id", id=books.holds["cancelled"]
    )
    found = await check_invariants(db, clock.now())
    assert [(v.invariant, v.code) for v in found] == [(4, "resolution_mismatch")]


async def test_hold_resolved_twice(db, clock):
    """UNIQUE(pending_id) makes this impossible; the check is for a schema that lost it.

    Both backends have transactional DDL: inside one transaction the transfers table is
    swapped for a copy without constraints, a second resolution is added, the check's query
    runs on that connection, and everything rolls back.
    """
    from core.invariants import _holds

    books = await _build(db, clock)
    hid = books.holds["completed"]
    async with db.engine.connect() as conn:
        trans = await conn.begin()
        try:
            await conn.execute(text("ALTER TABLE transfers RENAME TO transfers_real"))
            await conn.execute(text("CREATE TABLE transfers AS SELECT * FROM transfers_real"))
            await conn.execute(
                text(
                    "INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount,"
                    " pending_id, code, created_at) SELECT 'second', 'void_pending', debit_account_id,"
                    " credit_account_id, amount, id, 'release', created_at FROM transfers WHERE id = :id"
                ),
                {"id": hid},
            )
            found = await _holds(conn, clock.now())
        finally:
            await trans.rollback()
    assert [(v.invariant, v.code, v.ref) for v in found] == [(4, "hold_resolved_twice", hid)]
    assert await check_invariants(db, clock.now()) == []


# Invariant 5 -------------------------------------------------------------------------------

ORDER_CORRUPTIONS = [
    # (order status to corrupt, SQL, expected code)
    ("waiting", "UPDATE orders SET status = 'completed' WHERE id = :oid", "order_completed_hold_not_posted"),
    ("reserving", "UPDATE orders SET status = 'cancelled' WHERE id = :oid", "order_closed_hold_not_voided"),
    ("completed", "UPDATE orders SET status = 'expired' WHERE id = :oid", "order_closed_hold_not_voided"),
    ("cancelled", "UPDATE orders SET status = 'waiting' WHERE id = :oid", "order_open_hold_resolved"),
    ("completed", "UPDATE orders SET status = 'reserving' WHERE id = :oid", "order_open_hold_resolved"),
    ("failed", "UPDATE orders SET status = 'refunded' WHERE id = :oid", "order_completed_hold_not_posted"),
    (
        "refunded",
        "DELETE FROM transfers WHERE code = 'refund' AND order_id = :oid",
        "order_refunded_without_refund",
    ),
    ("waiting", "UPDATE orders SET status = 'lost' WHERE id = :oid", "order_unknown_status"),
    ("waiting", "UPDATE orders SET price = price + 1 WHERE id = :oid", "order_hold_mismatch"),
    (
        "completed",
        "UPDATE transfers SET order_id = :oid, code = 'refund' WHERE code = 'topup'"
        " AND credit_account_id = (SELECT wallet_account_id FROM users WHERE telegram_id = 1002)",
        "refund_order_not_refunded",
    ),
    (
        "refunded",
        "UPDATE transfers SET amount = amount + 1 WHERE code = 'refund' AND order_id = :oid",
        "refund_exceeds_price",
    ),
    ("waiting", "DELETE FROM orders WHERE id = :oid", "hold_without_order"),
]


@pytest.mark.parametrize(
    "status, sql, code", ORDER_CORRUPTIONS, ids=[f"{c[2]}-{c[0]}" for c in ORDER_CORRUPTIONS]
)
async def test_order_ledger_disagreement(db, clock, status, sql, code):
    books = await _build(db, clock)
    assert await check_invariants(db, clock.now()) == []
    oid = books.orders[status]
    await _sql(db, sql, oid=oid)
    found = await check_invariants(db, clock.now())
    order_findings = [v for v in found if v.invariant == 5]
    expected_ref = books.holds[status] if code == "hold_without_order" else oid
    assert (5, code, expected_ref) in {(v.invariant, v.code, v.ref) for v in order_findings}, found


async def test_order_pointing_at_a_non_hold(db, clock):
    books = await _build(db, clock)
    await _sql(
        db,
        "UPDATE orders SET hold_transfer_id = :h WHERE id = :oid",
        h=ledger.derived_id("refund", books.orders["refunded"]),
        oid=books.orders["waiting"],
    )
    found = await check_invariants(db, clock.now())
    assert (5, "order_hold_missing", books.orders["waiting"]) in {(v.invariant, v.code, v.ref) for v in found}


async def test_hold_on_someone_elses_wallet(db, clock):
    books = await _build(db, clock)
    await _sql(
        db,
        "UPDATE orders SET user_id = (SELECT id FROM users WHERE telegram_id = 1002) WHERE id = :oid",
        oid=books.orders["waiting"],
    )
    found = await check_invariants(db, clock.now())
    assert [(v.code, v.ref) for v in found] == [("order_hold_mismatch", books.orders["waiting"])]
