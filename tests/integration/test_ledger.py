"""Every ledger operation against a real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core import ledger
from core.db.tables import accounts, transfers
from core.errors import HoldAlreadyResolved, InsufficientFunds, NotFound, TransferConflict
from core.invariants import check_invariants


async def _funded_wallet(db, clock, amount: int) -> tuple[int, int, int]:
    """A wallet topped up with ``amount``; returns (wallet, revenue, topups)."""
    now = clock.now()
    async with db.begin() as conn:
        wallet = await ledger.open_wallet(conn, now)
        revenue = await ledger.system_account(conn, ledger.REVENUE)
        topups = await ledger.system_account(conn, ledger.TOPUPS)
        if amount:
            await ledger.post_transfer(
                conn, id=ledger.new_id(), debit=topups, credit=wallet, amount=amount, code="topup", now=now
            )
    return wallet, revenue, topups


async def _balances(db, *ids: int) -> list[ledger.AccountBalance]:
    async with db.read() as conn:
        return [await ledger.balance_of(conn, i) for i in ids]


async def _transfer_count(db) -> int:
    async with db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(transfers)))


async def _hold(db, clock, wallet: int, revenue: int, amount: int, **kw) -> ledger.TransferResult:
    now = clock.now()
    async with db.begin() as conn:
        return await ledger.create_hold(
            conn,
            id=kw.pop("id", ledger.new_id()),
            debit=wallet,
            credit=revenue,
            amount=amount,
            timeout_at=now + timedelta(minutes=30),
            now=now,
            code=kw.pop("code", "hold"),
            **kw,
        )


async def _assert_clean(db, clock) -> None:
    assert await check_invariants(db, clock.now()) == []


async def test_system_accounts_are_created_once(db, clock):
    async with db.begin() as conn:
        await ledger.ensure_system_accounts(conn, clock.now())  # the fixture already ran it
        rows = (
            await conn.execute(select(accounts.c.code, accounts.c.kind).where(accounts.c.code.is_not(None)))
        ).all()
        revenue = await ledger.system_account(conn, ledger.REVENUE)
    assert sorted(rows) == sorted((code, kind) for kind, code in ledger.system_rows())
    assert len([r for r in rows if r.kind == ledger.REVENUE]) == ledger.SHARDS
    assert revenue > 0


async def test_shards_spread_by_key_and_the_plain_account_comes_without_one(db):
    """The same key always picks the same shard (an order's hold and refund meet on one
    row); many keys use every shard; no key gives the plain, unsharded row."""
    async with db.read() as conn:
        ids = await ledger.system_account_ids(conn, ledger.REVENUE)
        plain = await ledger.system_account(conn, ledger.REVENUE)
        picks = [await ledger.system_account(conn, ledger.REVENUE, spread=f"order-{i}") for i in range(400)]
        again = await ledger.system_account(conn, ledger.REVENUE, spread="order-7")
        adjustments = await ledger.system_account_ids(conn, ledger.ADJUSTMENTS)
    assert plain == ids[0] and len(ids) == ledger.SHARDS
    assert set(picks) == set(ids)
    assert again == picks[7]
    assert len(adjustments) == 1  # not a hot account: one row


async def test_posted_transfer_moves_money_on_both_sides(db, clock):
    wallet, _revenue, topups = await _funded_wallet(db, clock, 0)
    tid = ledger.new_id()
    async with db.begin() as conn:
        result = await ledger.post_transfer(
            conn,
            id=tid,
            debit=topups,
            credit=wallet,
            amount=750,
            code="topup",
            now=clock.now(),
            reference="pay-1",
        )
    assert result == ledger.TransferResult(tid, True, 750)
    w, t = await _balances(db, wallet, topups)
    assert (w.credits_posted, w.debits_posted, w.balance, w.held, w.available) == (750, 0, 750, 0, 750)
    assert (t.debits_posted, t.credits_posted) == (750, 0)
    async with db.read() as conn:
        row = (await conn.execute(select(transfers).where(transfers.c.id == tid))).mappings().one()
    assert (row["kind"], row["code"], row["reference"], row["created_at"]) == (
        "posted",
        "topup",
        "pay-1",
        clock.now(),
    )
    await _assert_clean(db, clock)


async def test_identical_retry_exists_and_moves_nothing(db, clock):
    wallet, _revenue, topups = await _funded_wallet(db, clock, 0)
    tid = ledger.new_id()
    for expected_created in (True, False, False):
        async with db.begin() as conn:
            result = await ledger.post_transfer(
                conn, id=tid, debit=topups, credit=wallet, amount=300, code="topup", now=clock.now()
            )
        assert result.created is expected_created
    (w,) = await _balances(db, wallet)
    assert w.balance == 300
    assert await _transfer_count(db) == 1
    await _assert_clean(db, clock)


@pytest.mark.parametrize("change", ["amount", "credit", "code", "order_id"])
async def test_same_id_different_content_is_a_conflict(db, clock, change):
    wallet, revenue, topups = await _funded_wallet(db, clock, 0)
    tid = ledger.new_id()
    base = dict(id=tid, debit=topups, credit=wallet, amount=300, code="topup", now=clock.now())
    async with db.begin() as conn:
        await ledger.post_transfer(conn, **base)
    other = dict(base)
    other[change] = {"amount": 301, "credit": revenue, "code": "adjustment", "order_id": "o-1"}[change]
    with pytest.raises(TransferConflict):
        async with db.begin() as conn:
            await ledger.post_transfer(conn, **other)
    w, r = await _balances(db, wallet, revenue)
    assert (w.balance, r.credits_posted) == (300, 0)
    assert await _transfer_count(db) == 1


async def test_hold_reserves_without_moving_the_balance(db, clock):
    wallet, revenue, _ = await _funded_wallet(db, clock, 1000)
    hold = await _hold(db, clock, wallet, revenue, 400, order_id="order-1")
    assert hold.created and hold.amount == 400
    w, r = await _balances(db, wallet, revenue)
    assert (w.balance, w.held, w.available) == (1000, 400, 600)
    assert (r.credits_pending, r.credits_posted) == (400, 0)
    async with db.read() as conn:
        assert await ledger.hold_resolution(conn, hold.id) is None
        row = (await conn.execute(select(transfers).where(transfers.c.id == hold.id))).mappings().one()
    assert (row["kind"], row["order_id"], row["timeout_at"]) == (
        "pending",
        "order-1",
        clock.now() + timedelta(minutes=30),
    )
    await _assert_clean(db, clock)


async def test_hold_identical_retry_exists(db, clock):
    wallet, revenue, _ = await _funded_wallet(db, clock, 1000)
    hid = ledger.new_id()
    first = await _hold(db, clock, wallet, revenue, 400, id=hid)
    again = await _hold(db, clock, wallet, revenue, 400, id=hid)
    assert (first.created, again.created) == (True, False)
    (w,) = await _balances(db, wallet)
    assert w.held == 400
    with pytest.raises(TransferConflict):
        await _hold(db, clock, wallet, revenue, 500, id=hid)
    (w,) = await _balances(db, wallet)
    assert w.held == 400


async def test_post_hold_captures_once(db, clock):
    wallet, revenue, _ = await _funded_wallet(db, clock, 1000)
    hold = await _hold(db, clock, wallet, revenue, 400)
    async with db.begin() as conn:
        first = await ledger.capture_hold(conn, hold.id, clock.now())
    async with db.begin() as conn:
        again = await ledger.capture_hold(conn, hold.id, clock.now())
        resolution = await ledger.hold_resolution(conn, hold.id)
    assert (first.created, again.created, first.id) == (True, False, again.id)
    assert first.amount == 400 and resolution == ledger.TransferKind.CAPTURE
    w, r = await _balances(db, wallet, revenue)
    assert (w.balance, w.held, w.available) == (600, 0, 600)
    assert (r.credits_posted, r.credits_pending) == (400, 0)
    await _assert_clean(db, clock)


async def test_void_hold_releases_and_is_idempotent(db, clock):
    wallet, revenue, _ = await _funded_wallet(db, clock, 1000)
    hold = await _hold(db, clock, wallet, revenue, 400)
    async with db.begin() as conn:
        first = await ledger.void_hold(conn, hold.id, clock.now())
    async with db.begin() as conn:
        again = await ledger.void_hold(conn, hold.id, clock.now())
        resolution = await ledger.hold_resolution(conn, hold.id)
    assert (first.created, again.created) == (True, False)
    assert resolution == ledger.TransferKind.VOID
    w, r = await _balances(db, wallet, revenue)
    assert (w.balance, w.held, w.available) == (1000, 0, 1000)
    assert (r.credits_posted, r.credits_pending) == (0, 0)
    await _assert_clean(db, clock)


@pytest.mark.parametrize("first, second", [("post", "void"), ("void", "post")])
async def test_second_different_resolution_is_refused(db, clock, first, second):
    wallet, revenue, _ = await _funded_wallet(db, clock, 1000)
    hold = await _hold(db, clock, wallet, revenue, 400)
    ops = {"post": ledger.capture_hold, "void": ledger.void_hold}
    async with db.begin() as conn:
        await ops[first](conn, hold.id, clock.now())
    before = await _balances(db, wallet, revenue)
    with pytest.raises(HoldAlreadyResolved):
        async with db.begin() as conn:
            await ops[second](conn, hold.id, clock.now())
    assert await _balances(db, wallet, revenue) == before
    assert await _transfer_count(db) == 3  # top-up, hold, one resolution
    await _assert_clean(db, clock)


async def test_resolving_what_is_not_a_hold_is_not_found(db, clock):
    wallet, revenue, topups = await _funded_wallet(db, clock, 1000)
    posted = ledger.new_id()
    async with db.begin() as conn:
        await ledger.post_transfer(
            conn, id=posted, debit=topups, credit=wallet, amount=5, code="topup", now=clock.now()
        )
    for pending_id in (ledger.new_id(), posted):
        with pytest.raises(NotFound):
            async with db.begin() as conn:
                await ledger.void_hold(conn, pending_id, clock.now())


async def test_insufficient_funds_rolls_back_everything(db, clock):
    wallet, revenue, _ = await _funded_wallet(db, clock, 500)
    await _hold(db, clock, wallet, revenue, 300)
    before = await _balances(db, wallet, revenue)
    count = await _transfer_count(db)
    with pytest.raises(InsufficientFunds) as info:
        await _hold(db, clock, wallet, revenue, 300)
    assert (info.value.missing, info.value.available) == (100, 200)
    assert await _balances(db, wallet, revenue) == before
    assert await _transfer_count(db) == count
    await _assert_clean(db, clock)


async def test_insufficient_funds_caught_inside_a_transaction_leaves_nothing(db, clock):
    """A caller may catch the refusal and commit other work: no half transfer may survive."""
    wallet, revenue, _ = await _funded_wallet(db, clock, 500)
    before = await _balances(db, wallet, revenue)
    count = await _transfer_count(db)
    refused = ledger.new_id()
    async with db.begin() as conn:
        with pytest.raises(InsufficientFunds):
            await ledger.create_hold(
                conn,
                id=refused,
                debit=wallet,
                credit=revenue,
                amount=501,
                timeout_at=clock.now(),
                now=clock.now(),
                code="hold",
            )
        with pytest.raises(InsufficientFunds):
            await ledger.post_transfer(
                conn,
                id=ledger.new_id(),
                debit=wallet,
                credit=revenue,
                amount=501,
                code="adjustment",
                now=clock.now(),
            )
    assert await _balances(db, wallet, revenue) == before
    assert await _transfer_count(db) == count
    # The id was not burnt: a later, affordable transfer with it goes through.
    async with db.begin() as conn:
        ok = await ledger.create_hold(
            conn,
            id=refused,
            debit=wallet,
            credit=revenue,
            amount=500,
            timeout_at=clock.now(),
            now=clock.now(),
            code="hold",
        )
    assert ok.created
    await _assert_clean(db, clock)


async def test_refused_debit_undoes_a_credit_applied_first(db, clock):
    """Lock order applies the credit first when the credited account has the higher id."""
    low, _revenue, _ = await _funded_wallet(db, clock, 100)
    high, _, _ = await _funded_wallet(db, clock, 0)
    assert high > low
    async with db.begin() as conn:
        with pytest.raises(InsufficientFunds):
            await ledger.post_transfer(
                conn,
                id=ledger.new_id(),
                debit=low,
                credit=high,
                amount=101,
                code="adjustment",
                now=clock.now(),
            )
    lo, hi = await _balances(db, low, high)
    assert (lo.balance, hi.balance, hi.credits_posted) == (100, 0, 0)
    await _assert_clean(db, clock)


async def test_posted_debit_counts_held_money(db, clock):
    wallet, revenue, _ = await _funded_wallet(db, clock, 500)
    await _hold(db, clock, wallet, revenue, 400)
    async with db.begin() as conn:
        adjustments = await ledger.system_account(conn, ledger.ADJUSTMENTS)
    with pytest.raises(InsufficientFunds):
        async with db.begin() as conn:
            await ledger.post_transfer(
                conn,
                id=ledger.new_id(),
                debit=wallet,
                credit=adjustments,
                amount=101,
                code="adjustment",
                now=clock.now(),
            )
    async with db.begin() as conn:
        await ledger.post_transfer(
            conn,
            id=ledger.new_id(),
            debit=wallet,
            credit=adjustments,
            amount=100,
            code="adjustment",
            now=clock.now(),
        )
    (w,) = await _balances(db, wallet)
    assert (w.balance, w.held, w.available) == (400, 400, 0)
    await _assert_clean(db, clock)


@pytest.mark.parametrize("amount", [0, -5, True, 1.5])
async def test_non_positive_or_non_integer_amounts_are_refused(db, clock, amount):
    wallet, revenue, topups = await _funded_wallet(db, clock, 100)
    with pytest.raises(ValueError):
        async with db.begin() as conn:
            await ledger.post_transfer(
                conn,
                id=ledger.new_id(),
                debit=topups,
                credit=wallet,
                amount=amount,
                code="topup",
                now=clock.now(),
            )
    with pytest.raises(ValueError):
        async with db.begin() as conn:
            await ledger.create_hold(
                conn,
                id=ledger.new_id(),
                debit=wallet,
                credit=revenue,
                amount=amount,
                timeout_at=clock.now(),
                now=clock.now(),
            )
    assert await _transfer_count(db) == 1


async def test_balance_of_unknown_account(db):
    with pytest.raises(NotFound):
        async with db.read() as conn:
            await ledger.balance_of(conn, 999_999)


def test_derived_ids_are_stable_and_distinct():
    assert ledger.derived_id("topup", "stars", "abc") == ledger.derived_id("topup", "stars", "abc")
    assert ledger.derived_id("topup", "stars", "abc") != ledger.derived_id("topup", "stars", "abd")
    assert ledger.new_id() != ledger.new_id()
    assert len(ledger.derived_id("x")) == 36
