"""Users, the audit log and the wallet service against a real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core import audit, ledger
from core.db.tables import accounts, audit_log, transfers, users
from core.errors import IdempotencyConflict, InsufficientFunds, InvalidInput, UserNotFound
from core.invariants import check_invariants
from core.users import (
    find_user,
    get_or_create_user,
    get_user,
    mark_unreachable,
    search_users,
    set_blocked,
)
from core.wallets import Wallets, WalletView


@pytest.fixture
def wallets(db, clock) -> Wallets:
    return Wallets(db, clock, "USD")


async def _counts(db) -> tuple[int, int, int, int]:
    """(users, wallet accounts, transfers, audit rows): what 'nothing written' means."""
    async with db.read() as conn:
        return (
            int(await conn.scalar(select(func.count()).select_from(users))),
            int(
                await conn.scalar(
                    select(func.count()).select_from(accounts).where(accounts.c.kind == "wallet")
                )
            ),
            int(await conn.scalar(select(func.count()).select_from(transfers))),
            int(await conn.scalar(select(func.count()).select_from(audit_log))),
        )


async def _audit_rows(db) -> list:
    async with db.read() as conn:
        return (await conn.execute(select(audit_log).order_by(audit_log.c.id))).mappings().all()


# Users -------------------------------------------------------------------------------------


async def test_get_or_create_user_creates_once_with_a_wallet(db, clock):
    async with db.begin() as conn:
        first = await get_or_create_user(
            conn, telegram_id=42, username="@Alice", first_name="Alice", now=clock.now()
        )
        again = await get_or_create_user(conn, telegram_id=42, now=clock.now())
        wallet = (
            (await conn.execute(select(accounts).where(accounts.c.id == first.wallet_account_id)))
            .mappings()
            .one()
        )
    assert first == again
    assert (first.telegram_id, first.username, first.first_name) == (42, "Alice", "Alice")
    assert (first.blocked, first.unreachable, first.created_at) == (False, False, clock.now())
    assert wallet["kind"] == "wallet" and wallet["debits_must_not_exceed_credits"]
    assert await _counts(db) == (1, 1, 0, 0)


async def test_get_or_create_user_losing_the_insert_leaves_no_orphan_wallet(db, clock, monkeypatch):
    """The path a concurrent loser takes: it saw no user, opened a wallet, then lost the insert."""
    import core.users as users_module

    async with db.begin() as conn:
        winner = await get_or_create_user(conn, telegram_id=42, now=clock.now())
    real_find = users_module.find_user
    misses = []

    async def stale_find(conn, telegram_id):
        if not misses:  # the first look happens "before the winner committed"
            misses.append(telegram_id)
            return None
        return await real_find(conn, telegram_id)

    monkeypatch.setattr(users_module, "find_user", stale_find)
    async with db.begin() as conn:
        loser = await get_or_create_user(conn, telegram_id=42, now=clock.now())
    assert misses == [42]
    assert loser == winner
    assert await _counts(db) == (1, 1, 0, 0)


async def test_get_or_create_user_keeps_names_current(db, clock):
    async with db.begin() as conn:
        await get_or_create_user(conn, telegram_id=42, username="old", first_name="A", now=clock.now())
        updated = await get_or_create_user(conn, telegram_id=42, username="new", now=clock.now())
    assert (updated.username, updated.first_name) == ("new", "A")
    async with db.read() as conn:
        assert (await find_user(conn, 42)).username == "new"


@pytest.mark.parametrize("bad", [0, -5, "42", None, True])
async def test_get_or_create_user_refuses_bad_ids(db, clock, bad):
    with pytest.raises(InvalidInput):
        async with db.begin() as conn:
            await get_or_create_user(conn, telegram_id=bad, now=clock.now())
    assert await _counts(db) == (0, 0, 0, 0)


async def test_find_and_get_user(db, clock):
    async with db.begin() as conn:
        created = await get_or_create_user(conn, telegram_id=7, now=clock.now())
    async with db.read() as conn:
        assert await find_user(conn, 7) == created
        assert await find_user(conn, 8) is None
        assert await get_user(conn, created.id) == created
        with pytest.raises(UserNotFound):
            await get_user(conn, created.id + 1)


async def test_search_users(db, clock):
    async with db.begin() as conn:
        for tid, name in [
            (111, "carol_x"),
            (222, "Caroline"),
            (333, "dave"),
            (1110, None),
            (444, "100%real"),
        ]:
            await get_or_create_user(conn, telegram_id=tid, username=name, now=clock.now())
    async with db.read() as conn:
        by_name = {u.telegram_id for u in await search_users(conn, "carol", 10)}
        at_name = {u.telegram_id for u in await search_users(conn, "@CAROL", 10)}
        by_id = [u.telegram_id for u in await search_users(conn, "111", 10)]
        underscore = {u.telegram_id for u in await search_users(conn, "_", 10)}
        percent = {u.telegram_id for u in await search_users(conn, "%", 10)}
        limited = await search_users(conn, "a", 1)
        blank = await search_users(conn, "  ", 10)
    assert by_name == at_name == {111, 222}
    assert by_id == [111]  # exact id, not 1110
    assert underscore == {111}  # LIKE wildcards are literal
    assert percent == {444}
    assert len(limited) == 1 and blank == []


async def test_set_blocked_and_mark_unreachable(db, clock):
    async with db.begin() as conn:
        user = await get_or_create_user(conn, telegram_id=9, now=clock.now())
        blocked = await set_blocked(conn, user.id, True)
        assert await mark_unreachable(conn, 9) is True
        assert await mark_unreachable(conn, 10) is False
    assert blocked.blocked is True
    async with db.begin() as conn:
        assert (await get_user(conn, user.id)).unreachable is True
        await mark_unreachable(conn, 9, unreachable=False)
        unblocked = await set_blocked(conn, user.id, False)
        with pytest.raises(UserNotFound):
            await set_blocked(conn, user.id + 100, True)
    assert (unblocked.blocked, unblocked.unreachable) == (False, False)


# Audit -------------------------------------------------------------------------------------


async def test_audit_record_writes_one_row(db, clock):
    async with db.begin() as conn:
        row_id = await audit.record(
            conn,
            actor="staff:alice",
            action="order.refund",
            target_type="order",
            target_id=17,
            reason="duplicate",
            detail={"amount": 100},
            now=clock.now(),
        )
    (row,) = await _audit_rows(db)
    assert row["id"] == row_id
    assert (
        row["actor"],
        row["action"],
        row["target_type"],
        row["target_id"],
        row["reason"],
        row["detail"],
        row["created_at"],
    ) == ("staff:alice", "order.refund", "order", "17", "duplicate", {"amount": 100}, clock.now())


async def test_audit_row_rolls_back_with_its_change(db, clock):
    with pytest.raises(RuntimeError):
        async with db.begin() as conn:
            await audit.record(conn, actor="cli", action="wallet.credit", now=clock.now())
            raise RuntimeError("the change failed")
    assert await _audit_rows(db) == []


# Wallets -----------------------------------------------------------------------------------


async def test_show_unknown_user(wallets):
    with pytest.raises(UserNotFound):
        await wallets.show(5)


async def test_credit_creates_the_user_and_audits(db, clock, wallets):
    change = await wallets.credit(5, 1250, reason="welcome bonus", actor="staff:bob")
    assert change.created and change.amount == 1250
    view = await wallets.show(5)
    assert change.wallet == view
    assert (view.telegram_id, view.balance, view.held, view.available) == (5, 1250, 0, 1250)
    (row,) = await _audit_rows(db)
    assert (row["actor"], row["action"], row["target_type"], row["target_id"], row["reason"]) == (
        "staff:bob",
        "wallet.credit",
        "user",
        str(view.user_id),
        "welcome bonus",
    )
    assert row["detail"]["amount"] == 1250 and row["detail"]["transfer_id"] == change.transfer_id
    assert await check_invariants(db, clock.now()) == []


async def test_credit_retry_with_key_is_a_no_op(db, clock, wallets):
    first = await wallets.credit(5, 500, reason="r", idempotency_key="k-1")
    again = await wallets.credit(5, 500, reason="r", idempotency_key="k-1")
    assert (first.created, again.created) == (True, False)
    assert first.transfer_id == again.transfer_id == ledger.derived_id("wallet.credit", "k-1")
    assert again.wallet.balance == 500
    assert await _counts(db) == (1, 1, 1, 1)  # one transfer, one audit row


async def test_credit_key_reused_with_other_amount_or_user_conflicts(db, clock, wallets):
    await wallets.credit(5, 500, reason="r", idempotency_key="k-1")
    before = await _counts(db)
    with pytest.raises(IdempotencyConflict):
        await wallets.credit(5, 501, reason="r", idempotency_key="k-1")
    with pytest.raises(IdempotencyConflict):
        await wallets.credit(6, 500, reason="r", idempotency_key="k-1")
    with pytest.raises(IdempotencyConflict):
        await wallets.debit(5, 500, reason="r", idempotency_key="k-1")
    assert await _counts(db) == before  # user 6 was not created either
    assert (await wallets.show(5)).balance == 500


async def test_debit(db, clock, wallets):
    await wallets.credit(5, 1000, reason="seed")
    change = await wallets.debit(5, 300, reason="chargeback", idempotency_key="d-1")
    again = await wallets.debit(5, 300, reason="chargeback", idempotency_key="d-1")
    assert (change.created, again.created) == (True, False)
    assert change.wallet.balance == again.wallet.balance == 700
    actions = [r["action"] for r in await _audit_rows(db)]
    assert actions == ["wallet.credit", "wallet.debit"]
    async with db.read() as conn:
        adjustments = await ledger.system_account(conn, ledger.ADJUSTMENTS)
        adj = await ledger.balance_of(conn, adjustments)
    assert (adj.debits_posted, adj.credits_posted) == (1000, 300)
    assert await check_invariants(db, clock.now()) == []


async def test_debit_unknown_user_creates_nothing(db, wallets):
    with pytest.raises(UserNotFound):
        await wallets.debit(5, 1, reason="x")
    assert await _counts(db) == (0, 0, 0, 0)


async def test_debit_beyond_available_counts_holds_and_writes_nothing(db, clock, wallets):
    await wallets.credit(5, 1000, reason="seed")
    async with db.begin() as conn:
        user = await find_user(conn, 5)
        revenue = await ledger.system_account(conn, ledger.REVENUE)
        await ledger.create_hold(
            conn,
            id=ledger.new_id(),
            debit=user.wallet_account_id,
            credit=revenue,
            amount=800,
            code="hold",
            now=clock.now(),
            timeout_at=clock.now() + timedelta(minutes=5),
        )
    before = await _counts(db)
    with pytest.raises(InsufficientFunds) as info:
        await wallets.debit(5, 201, reason="too much")
    assert (info.value.missing, info.value.available) == (1, 200)
    assert await _counts(db) == before
    assert await wallets.show(5) == WalletView(user.id, 5, 1000, 800, 200)


@pytest.mark.parametrize(
    "amount, reason, key",
    [
        (0, "r", None),
        (-100, "r", None),
        (True, "r", None),
        (1.5, "r", None),
        ("100", "r", None),
        (100, "", None),
        (100, "   ", None),
        (100, None, None),
        (10**14, "r", None),
        (100, "r", ""),
        (100, "r", "k" * 129),
    ],
)
async def test_bad_input_changes_nothing(db, wallets, amount, reason, key):
    await wallets.credit(5, 100, reason="seed")
    before = await _counts(db)
    for op, tid in ((wallets.credit, 5), (wallets.credit, 6), (wallets.debit, 5)):
        with pytest.raises(InvalidInput):
            await op(tid, amount, reason=reason, idempotency_key=key)
    assert await _counts(db) == before
    assert (await wallets.show(5)).balance == 100


@pytest.mark.parametrize("bad", [0, -1, "5"])
async def test_bad_telegram_id_is_invalid_input(db, wallets, bad):
    with pytest.raises(InvalidInput):
        await wallets.credit(bad, 100, reason="r")
    with pytest.raises(InvalidInput):
        await wallets.show(bad)
    assert await _counts(db) == (0, 0, 0, 0)


async def test_top_up_exactly_once_per_reference(db, clock, wallets):
    first = await wallets.top_up(77, 999, source="stars", reference="charge-1", username="zed")
    again = await wallets.top_up(77, 999, source="stars", reference="charge-1")
    other_source = await wallets.top_up(77, 1, source="crypto", reference="charge-1")
    assert (first.created, again.created, other_source.created) == (True, False, True)
    assert first.transfer_id == ledger.derived_id("topup", "stars", "charge-1")
    assert other_source.wallet.balance == 1000
    with pytest.raises(IdempotencyConflict):
        await wallets.top_up(77, 998, source="stars", reference="charge-1")
    with pytest.raises(IdempotencyConflict):
        await wallets.top_up(78, 999, source="stars", reference="charge-1")
    async with db.read() as conn:
        user = await find_user(conn, 77)
        row = (
            (await conn.execute(select(transfers).where(transfers.c.id == first.transfer_id)))
            .mappings()
            .one()
        )
    assert user.username == "zed"
    assert (row["code"], row["reference"]) == ("topup", "stars:charge-1")
    assert await _counts(db) == (1, 1, 2, 0)
    assert await check_invariants(db, clock.now()) == []


@pytest.mark.parametrize(
    "source, reference, amount",
    [
        ("", "r", 1),
        ("stars", " ", 1),
        ("stars", "r" * 128, 1),
        ("stars", "r", 0),
    ],
)
async def test_top_up_bad_input(db, wallets, source, reference, amount):
    with pytest.raises(InvalidInput):
        await wallets.top_up(77, amount, source=source, reference=reference)
    assert await _counts(db) == (0, 0, 0, 0)
