"""Races with real parallel connections: each task runs its own ``db.begin()`` transaction.

Tasks wait on a start gate so they hit the database together. On PostgreSQL the tests also
check that several transactions were really open at once (SQLite's BEGIN IMMEDIATE
serializes writers by design, which is exactly what it must survive).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text

from core import ledger
from core.db.tables import accounts, audit_log, transfers, users
from core.errors import HoldAlreadyResolved, InsufficientFunds
from core.invariants import check_invariants
from core.users import get_or_create_user
from core.wallets import Wallets


class Race:
    """Start many coroutines at once and count how many transactions overlapped."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.inside = 0
        self.max_inside = 0

    async def run(self, jobs: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
        async def gated(job: Callable[[], Awaitable[Any]]) -> Any:
            await self.gate.wait()
            return await job()

        tasks = [asyncio.create_task(gated(job)) for job in jobs]
        await asyncio.sleep(0)  # let every task reach the gate
        self.gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    async def enter(self, conn) -> None:
        await conn.execute(text("SELECT 1"))  # the transaction is really open now
        self.inside += 1
        self.max_inside = max(self.max_inside, self.inside)

    def leave(self) -> None:
        self.inside -= 1


async def _funded_wallet(db, clock, amount: int) -> tuple[int, int]:
    now = clock.now()
    async with db.begin() as conn:
        wallet = await ledger.open_wallet(conn, now)
        revenue = await ledger.system_account(conn, ledger.REVENUE)
        topups = await ledger.system_account(conn, ledger.TOPUPS)
        await ledger.post_transfer(
            conn, id=ledger.new_id(), debit=topups, credit=wallet, amount=amount, code="topup", now=now
        )
    return wallet, revenue


async def _count(db, table, *where) -> int:
    async with db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)))


def _unexpected(results: list[Any], *allowed: type[BaseException]) -> list[Any]:
    return [r for r in results if isinstance(r, BaseException) and not isinstance(r, allowed)]


async def test_fifty_concurrent_holds_against_seven_affordable(db, clock):
    wallet, revenue = await _funded_wallet(db, clock, 700)
    race = Race()
    done = asyncio.Event()
    seen: list[int] = []

    async def watch() -> None:
        while not done.is_set():
            async with db.read() as conn:
                seen.append((await ledger.balance_of(conn, wallet)).available)
            await asyncio.sleep(0)

    def hold() -> Callable[[], Awaitable[ledger.TransferResult]]:
        async def job() -> ledger.TransferResult:
            async with db.begin() as conn:
                await race.enter(conn)
                try:
                    return await ledger.create_hold(
                        conn,
                        id=ledger.new_id(),
                        debit=wallet,
                        credit=revenue,
                        amount=100,
                        code="hold",
                        now=clock.now(),
                        timeout_at=clock.now() + timedelta(minutes=5),
                    )
                finally:
                    race.leave()

        return job

    watcher = asyncio.create_task(watch())
    results = await race.run([hold() for _ in range(50)])
    done.set()
    await watcher

    assert _unexpected(results, InsufficientFunds) == []
    won = [r for r in results if isinstance(r, ledger.TransferResult)]
    assert len(won) == 7 and all(r.created for r in won)
    assert seen and min(seen) >= 0
    async with db.read() as conn:
        bal = await ledger.balance_of(conn, wallet)
    assert (bal.balance, bal.held, bal.available) == (700, 700, 0)
    assert await _count(db, transfers, transfers.c.kind == ledger.TransferKind.HOLD) == 7
    if db.is_postgres:
        assert race.max_inside > 1
    assert await check_invariants(db, clock.now()) == []


async def test_thirty_concurrent_debits(db, clock):
    wallets = Wallets(db, clock)
    await wallets.credit(500, 1000, reason="seed")
    race = Race()
    results = await race.run([(lambda i=i: wallets.debit(500, 50, reason=f"debit {i}")) for i in range(30)])
    assert _unexpected(results, InsufficientFunds) == []
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 20
    assert min(r.wallet.available for r in won) == 0
    assert all(r.wallet.available >= 0 for r in won)
    assert (await wallets.show(500)).balance == 0
    assert await _count(db, audit_log, audit_log.c.action == "wallet.debit") == 20
    assert await check_invariants(db, clock.now()) == []


async def test_concurrent_top_ups_of_one_payment_credit_once(db, clock):
    """Twenty deliveries of one payment for a user the shop has never seen."""
    wallets = Wallets(db, clock)
    race = Race()
    results = await race.run(
        [
            (lambda: wallets.top_up(900, 1500, source="stars", reference="charge-xyz", username="new"))
            for _ in range(20)
        ]
    )
    assert _unexpected(results) == []
    assert sorted(r.created for r in results) == [False] * 19 + [True]
    assert {r.transfer_id for r in results} == {ledger.derived_id("topup", "stars", "charge-xyz")}
    assert (await wallets.show(900)).balance == 1500
    assert await _count(db, transfers, transfers.c.code == "topup") == 1
    assert await _count(db, users) == 1
    assert await _count(db, accounts, accounts.c.kind == "wallet") == 1
    assert await check_invariants(db, clock.now()) == []


async def test_concurrent_get_or_create_makes_one_user_and_one_wallet(db, clock):
    race = Race()

    def create() -> Callable[[], Awaitable[Any]]:
        async def job() -> Any:
            async with db.begin() as conn:
                return await get_or_create_user(conn, telegram_id=31337, username="racer", now=clock.now())

        return job

    results = await race.run([create() for _ in range(25)])
    assert _unexpected(results) == []
    assert len(set(results)) == 1
    assert await _count(db, users) == 1
    assert await _count(db, accounts, accounts.c.kind == "wallet") == 1
    (user,) = set(results)
    async with db.read() as conn:
        assert await conn.scalar(select(accounts.c.id).where(accounts.c.kind == "wallet")) == (
            user.wallet_account_id
        )
    assert await check_invariants(db, clock.now()) == []


async def test_void_racing_post_on_the_same_hold_one_wins(db, clock):
    wallet, revenue = await _funded_wallet(db, clock, 10_000)
    holds = []
    async with db.begin() as conn:
        for i in range(10):
            result = await ledger.create_hold(
                conn,
                id=ledger.new_id(),
                debit=wallet,
                credit=revenue,
                amount=100 + i,
                code="hold",
                now=clock.now(),
                timeout_at=clock.now() + timedelta(minutes=5),
            )
            holds.append(result)
    race = Race()

    def resolve(op, hold_id: str) -> Callable[[], Awaitable[Any]]:
        async def job() -> Any:
            async with db.begin() as conn:
                await race.enter(conn)
                try:
                    return op.__name__, await op(conn, hold_id, clock.now())
                finally:
                    race.leave()

        return job

    jobs = []
    for h in holds:
        jobs += [resolve(ledger.capture_hold, h.id), resolve(ledger.void_hold, h.id)]
    results = await race.run(jobs)

    assert _unexpected(results, HoldAlreadyResolved) == []
    posted = 0
    for h, pair in zip(holds, zip(results[::2], results[1::2], strict=True), strict=True):
        winners = [r for r in pair if not isinstance(r, BaseException)]
        assert len(winners) == 1, pair
        name, result = winners[0]
        assert result.created
        async with db.read() as conn:
            resolution = await ledger.hold_resolution(conn, h.id)
        assert resolution == (
            ledger.TransferKind.CAPTURE if name == "capture_hold" else ledger.TransferKind.VOID
        )
        posted += h.amount if name == "capture_hold" else 0
    async with db.read() as conn:
        bal = await ledger.balance_of(conn, wallet)
    assert (bal.balance, bal.held) == (10_000 - posted, 0)
    if db.is_postgres:
        assert race.max_inside > 1
    assert await check_invariants(db, clock.now()) == []


async def test_concurrent_identical_transfers_apply_once(db, clock):
    wallet, revenue = await _funded_wallet(db, clock, 1000)
    hold_id, post_id = ledger.new_id(), ledger.new_id()

    def job_for(make) -> Callable[[], Awaitable[Any]]:
        async def job() -> Any:
            async with db.begin() as conn:
                return await make(conn)

        return job

    race = Race()
    holds = await race.run(
        [
            job_for(
                lambda c: ledger.create_hold(
                    c,
                    id=hold_id,
                    debit=wallet,
                    credit=revenue,
                    amount=300,
                    code="hold",
                    now=clock.now(),
                    timeout_at=clock.now() + timedelta(minutes=5),
                )
            )
            for _ in range(10)
        ]
    )
    race = Race()
    posts = await race.run(
        [job_for(lambda c: ledger.capture_hold(c, hold_id, clock.now())) for _ in range(10)]
    )
    race = Race()
    topups = await race.run(
        [
            job_for(
                lambda c: ledger.post_transfer(
                    c, id=post_id, debit=revenue, credit=wallet, amount=5, code="adjustment", now=clock.now()
                )
            )
            for _ in range(10)
        ]
    )
    for results in (holds, posts, topups):
        assert _unexpected(results) == []
        assert sorted(r.created for r in results) == [False] * 9 + [True]
    async with db.read() as conn:
        bal = await ledger.balance_of(conn, wallet)
    assert (bal.balance, bal.held) == (1000 - 300 + 5, 0)
    assert await check_invariants(db, clock.now()) == []
