"""Two scheduler processes against one database, every job running at once.

Each "process" has its own ``Database`` (its own engine and connections) over the same SQLite
file or PostgreSQL database, its own ``OrderService`` and its own lease-owner name; they share
the upstream providers and the clock. Whatever the interleaving: no double refund, no double
notification, no lost code, no duplicate upstream work. Leader election on PostgreSQL is
tested with a real advisory lock and a killed backend.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from core.db.engine import Database
from core.db.tables import order_events, order_messages, orders, reconciliation_runs
from core.db.tables import outbox as outbox_t
from core.orders import OrderService
from core.providers.base import ActivationState, Offer
from core.providers.errors import EarlyCancelDenied, OutOfStock
from scheduler import runner
from scheduler.leader import AdvisoryLeader, SoleLeader, leadership_for
from scheduler.tickers import ShopJobs
from tests.integration.orders_support import AppliedButUnknown, Crash, Shop
from tests.integration.scheduler_support import FlakyProvider, buy, core_of

FUNDS, PRICE = 1000, 100


class Pair:
    def __init__(self, shop: Shop, db2: Database) -> None:
        self.shop = shop
        self.db2 = db2
        self.orders2 = OrderService(db2, shop.clock, shop.providers, shop.settings)
        self.a = ShopJobs(core_of(shop), owner="A")
        self.b = ShopJobs(core_of(shop, orders=self.orders2, db=db2), owner="B")

    async def both(self) -> None:
        """Every job of both schedulers at once."""
        runs = [t.run() for t in self.a.tickers()] + [t.run() for t in self.b.tickers()]
        results = await asyncio.gather(*runs, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == [], errors


@pytest.fixture
async def pair(db, clock):
    providers = {
        "alpha": FlakyProvider("alpha", clock, cost=40),
        "beta": FlakyProvider("beta", clock, cost=60, batch=False, idempotent=True),
    }
    for p in providers.values():

        async def catalogue(p=p):
            return [Offer("whatsapp", "GB", p.cost, 10)]

        p.catalogue = catalogue
    shop = Shop(db, clock, providers, STAFF_CHAT_ID=-1)
    await shop.setup_catalogue()
    db2 = Database(db.url)
    yield Pair(shop, db2)
    await db2.dispose()


async def buy_at(shop, name, user, key, lost=False):
    other = next(p for n, p in shop.providers.items() if n != name)
    other.rent_script = [OutOfStock("none")]
    if lost:
        shop.providers[name].rent_script = [AppliedButUnknown("reply lost")]
    got = await buy(shop, user, key, price=PRICE)
    other.rent_script = []
    assert got.provider == name
    return got


async def test_two_schedulers_every_job_at_once(pair, clock):
    shop = pair.shop
    alpha, beta = shop.providers["alpha"], shop.providers["beta"]
    users = [await shop.user(100 + i, funds=FUNDS) for i in range(16)]
    u = iter(users)
    coded = [await buy_at(shop, n, next(u), f"c{i}") for i, n in enumerate(["alpha", "beta"] * 3)]
    expiring = [await buy_at(shop, n, next(u), f"e{i}") for i, n in enumerate(["alpha", "beta"] * 2)]
    last_second = [await buy_at(shop, n, next(u), f"l{i}") for i, n in enumerate(["alpha", "beta"])]
    lost = [await buy_at(shop, n, next(u), f"r{i}", lost=True) for i, n in enumerate(["alpha", "beta"])]
    assert [o.status for o in lost] == ["reserving", "reserving"]
    cancelled = []
    for i, name in enumerate(["alpha", "beta"]):
        o = await buy_at(shop, name, next(u), f"x{i}")
        shop.providers[name].cancel_script = [
            EarlyCancelDenied("too early", retry_at=clock.now() + timedelta(seconds=150))
        ]
        await shop.orders.cancel(o.id, user_id=o.user_id)
        cancelled.append(o)
    rents_before = alpha.rents() + beta.rents()
    codes: dict[str, str] = {}

    def deliver(o, code):
        shop.providers[o.provider].deliver(o.activation_id, code)
        codes[o.id] = code

    for i, o in enumerate(coded):
        deliver(o, f"10{i:04d}")
    clock.advance(3)
    await pair.both()
    assert [(await shop.orders.get_order(o.id)).status for o in coded] == ["completed"] * 6

    clock.advance(shop.settings.RECOVERY_AFTER_SECONDS + 1)
    await pair.both()
    recovered = [await shop.orders.get_order(o.id) for o in lost]
    assert [o.status for o in recovered] == ["waiting", "waiting"]
    assert alpha.rents() + beta.rents() == rents_before  # recovery rented nothing new
    for i, o in enumerate(recovered):
        deliver(o, f"20{i:04d}")

    deadline = min(o.expires_at for o in expiring + last_second)
    clock.set(deadline - timedelta(seconds=1))
    for i, o in enumerate(last_second):
        deliver(o, f"30{i:04d}")  # a second before the deadline
    clock.set(max(o.expires_at for o in expiring + last_second) + timedelta(seconds=1))
    await pair.both()
    for _ in range(3):  # upstream retries, safety nets, reconciliation: nothing left to change
        clock.advance(shop.settings.ORDER_MAX_TTL_SECONDS + shop.settings.HOLD_GRACE_SECONDS)
        await pair.both()

    # Every order ended where it must, each code delivered, nothing refunded twice.
    final = {
        o.id: await shop.orders.get_order(o.id) for o in coded + expiring + last_second + lost + cancelled
    }
    completed = {o.id for o in coded + last_second + lost}
    for oid, o in final.items():
        want = (
            "completed"
            if oid in completed
            else ("cancelled" if oid in {c.id for c in cancelled} else "expired")
        )
        assert o.status == want, (oid, o.status, want)
        if oid in completed:
            assert o.code == codes[oid]
    for user in users:
        wallet = await shop.wallet(user)
        paid = PRICE if any(o.user_id == user.id and o.id in completed for o in final.values()) else 0
        assert (wallet.balance, wallet.held) == (FUNDS - paid, 0)

    async with shop.db.read() as conn:
        notes = Counter(
            (r.order_id, r.kind)
            for r in await conn.execute(
                select(outbox_t.c.order_id, outbox_t.c.kind).where(outbox_t.c.order_id.is_not(None))
            )
        )
        moves = Counter(
            (r.order_id, r.to_status)
            for r in await conn.execute(
                select(order_events.c.order_id, order_events.c.to_status).where(
                    order_events.c.to_status.is_not(None)
                )
            )
        )
        charged = Counter(
            r.order_id
            for r in await conn.execute(select(order_messages.c.order_id).where(order_messages.c.charged))
        )
        runs = (
            (await conn.execute(select(reconciliation_runs.c.status).order_by(reconciliation_runs.c.id)))
            .scalars()
            .all()
        )
    for oid, o in final.items():
        if oid in completed:
            assert notes[(oid, "completed")] == 1 and charged[oid] == 1
        elif o.status == "expired":
            assert notes[(oid, "expired")] == 1
        assert moves[(oid, o.status)] == 1  # the closing transition happened exactly once
    assert [k for k in notes if k[1] == "code_extra"] == []
    assert sum(notes[(o.id, "waiting")] for o in lost) == 2  # "your number is ready", once each
    assert max(notes.values()) == 1

    # No duplicate upstream work: one cancel per expired activation, one finish per completed
    # one, and the denied early cancels retried exactly once after their window.
    for o in expiring:
        p = shop.providers[o.provider]
        assert p.calls_of("cancel", o.activation_id) == 1
        assert p.activations[o.activation_id].state == ActivationState.CANCELLED
    for o in cancelled:
        p = shop.providers[o.provider]
        assert p.calls_of("cancel", o.activation_id) == 2
        assert final[o.id].upstream_state == "cancelled"
    for oid in completed:
        p = shop.providers[final[oid].provider]
        assert p.calls_of("finish", final[oid].activation_id) == 1
    assert len(runs) == 2 * 6 and runs[-2:] == ["clean", "clean"]
    await shop.assert_books_clean()


async def test_crash_after_claim_in_one_process_the_other_takes_over(pair, clock):
    shop = pair.shop
    user = await shop.user(1, funds=FUNDS)
    o = await buy_at(shop, "alpha", user, "k1")
    alpha = shop.providers["alpha"]
    alpha.deliver(o.activation_id, "777")
    alpha.batch_script = [Crash()]
    clock.advance(3)
    with pytest.raises(Crash):
        await pair.a.poll()
    assert await pair.b.poll() == 0
    clock.advance(3)  # A's lease runs out when the order is due again
    assert await pair.b.poll() == 1
    async with pair.db2.read() as conn:
        assert await conn.scalar(select(orders.c.code).where(orders.c.id == o.id)) == "777"
    await shop.assert_books_clean()


async def test_concurrent_polls_split_the_work(pair, clock):
    shop = pair.shop
    users = [await shop.user(200 + i, funds=FUNDS) for i in range(20)]
    bought = [await buy_at(shop, "alpha", u, f"p{i}") for i, u in enumerate(users)]
    for o in bought:
        shop.providers["alpha"].deliver(o.activation_id, "4321")
    clock.advance(3)
    got = await asyncio.gather(
        pair.a.core.orders.poll_due(owner="A", limit=5), pair.b.core.orders.poll_due(owner="B", limit=5)
    )
    assert sum(got) == 20
    asked = Counter()
    for call in shop.providers["alpha"].calls:
        if call[0] == "batch_status":
            asked.update(call[1].split(","))
    assert set(asked) == {o.activation_id for o in bought} and max(asked.values()) == 1
    await shop.assert_books_clean()


async def test_overlapping_recoveries_keep_the_number(pair, clock):
    """A lease that ran out mid-recovery lets a second recovery of the same order run: with
    an idempotent provider both get the same rental, and the one that loses must not cancel
    it as if it were an orphan."""
    shop = pair.shop
    user = await shop.user(1, funds=FUNDS)
    o = await buy_at(shop, "beta", user, "k1", lost=True)
    assert o.status == "reserving"
    clock.advance(shop.settings.RECOVERY_AFTER_SECONDS + 1)
    beta = shop.providers["beta"]
    real_rent, both_asking = beta.rent, asyncio.Barrier(2)

    async def rent(request):  # both recoveries are at the provider before either settles
        await asyncio.wait_for(both_asking.wait(), 5)
        return await real_rent(request)

    beta.rent = rent
    first, second = await asyncio.gather(shop.orders.recover_order(o.id), pair.orders2.recover_order(o.id))
    assert first.status == second.status == "waiting"
    assert beta.calls_of("cancel") == 0 and beta.rents() == 1
    assert beta.activations[first.activation_id].state == ActivationState.WAITING
    await shop.assert_books_clean()


# ------------------------------------------------------------------- leadership


async def test_sqlite_every_scheduler_runs_its_tickers(db):
    if not db.is_sqlite:
        pytest.skip("SQLite has no leader election")
    leader = leadership_for(db.url)
    assert isinstance(leader, SoleLeader)
    stop = asyncio.Event()
    assert await leader.acquire(stop) and await SoleLeader().acquire(stop)
    stop.set()
    assert not await leader.acquire(stop)


async def test_postgres_one_leads_the_other_takes_over_when_it_dies(db):
    if not db.is_postgres:
        pytest.skip("advisory locks are PostgreSQL's")
    key = uuid.uuid4().int & 0x7FFFFFFF
    first = AdvisoryLeader(db.url, key=key, retry_s=0.02, check_s=0.02)
    second = AdvisoryLeader(db.url, key=key, retry_s=0.02, check_s=0.02)
    stop = asyncio.Event()
    try:
        assert await asyncio.wait_for(first.acquire(stop), 5)
        assert isinstance(leadership_for(db.url), AdvisoryLeader)
        assert await second.try_acquire() is False
        assert await first.holds_lock() and not await second.holds_lock()
        standby = asyncio.create_task(second.acquire(stop))
        pid = await (await first._connection()).scalar(text("SELECT pg_backend_pid()"))
        async with db.begin() as conn:  # the leader's process dies: its session ends
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert await asyncio.wait_for(standby, 10) is True
        assert second.is_leader and await second.holds_lock()
        await asyncio.wait_for(first.watch(stop), 5)  # the old leader notices and steps down
        assert first.is_leader is False
        assert await first.try_acquire() is False  # and stands by in turn
    finally:
        await first.release()
        await second.release()


async def until(condition, timeout: float = 5.0) -> None:
    """Yield to the loop until ``condition()`` holds, failing after ``timeout`` seconds."""

    async def spin() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(spin(), timeout)


class FakeLeadership:
    """Leads at once, loses leadership when told to, then leads again until stopped."""

    def __init__(self) -> None:
        self.acquired = 0
        self.released = 0
        self.lost = asyncio.Event()
        self.leading = asyncio.Event()
        self.jobs_while_leading: list[int] = []

    async def acquire(self, stop: asyncio.Event) -> bool:
        if stop.is_set():
            return False
        self.acquired += 1
        self.leading.set()
        return True

    async def watch(self, stop: asyncio.Event) -> None:
        if self.acquired == 1:
            await self.lost.wait()
        else:
            await stop.wait()
        self.leading.clear()

    async def release(self) -> None:
        self.released += 1


async def test_runner_rebuilds_the_tickers_after_losing_and_regaining_leadership(pair, monkeypatch):
    started: list[int] = []
    stopped: list[bool] = []
    real_build = runner.build_scheduler

    def build(tickers, running=None):
        sched = real_build(tickers, running)
        sched.start = lambda *a, **k: started.append(len(sched.get_jobs()))
        sched.shutdown = lambda wait=True: stopped.append(wait)
        return sched

    monkeypatch.setattr(runner, "build_scheduler", build)
    lead = FakeLeadership()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run_scheduler(core_of(pair.shop), stop=stop, leadership=lead))
    await asyncio.wait_for(lead.leading.wait(), 5)
    lead.lost.set()
    await until(lambda: lead.acquired == 2)
    stop.set()
    await asyncio.wait_for(task, 5)
    every = len(ShopJobs(core_of(pair.shop)).tickers())
    assert started == [every, every] and stopped == [False, False]
    assert lead.acquired == 2 and lead.released == 1
