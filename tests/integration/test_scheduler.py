"""Every scheduled job's paths against a real database, driven by a fake clock.

The jobs are called directly (``ShopJobs``), never through APScheduler's timers; one test
checks that the APScheduler wiring registers every job at its interval. Each shop fixture
ends with the ledger auditor.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

from core import jobs
from core.db.tables import idempotency_keys, job_runs, offers, order_events, orders
from core.db.tables import outbox as outbox_t
from core.providers.base import ActivationState, Offer
from core.providers.errors import EarlyCancelDenied, ProviderUnavailable
from scheduler.runner import build_scheduler
from scheduler.tickers import ShopJobs, poll_tick
from tests.integration.orders_support import AppliedButUnknown, Crash, Shop
from tests.integration.scheduler_support import FlakyProvider, buy, core_of, count


@pytest.fixture
async def shop(db, clock):
    s = Shop(db, clock, {"alpha": FlakyProvider("alpha", clock)})
    await s.setup_catalogue()
    yield s
    await s.assert_books_clean()


@pytest.fixture
async def duo(db, clock):
    """alpha answers batch status calls; beta only answers one activation at a time."""
    s = Shop(
        db,
        clock,
        {
            "alpha": FlakyProvider("alpha", clock, cost=40),
            "beta": FlakyProvider("beta", clock, cost=40, batch=False),
        },
    )
    await s.setup_catalogue()
    yield s
    await s.assert_books_clean()


def jobs_of(shop, owner="A"):
    return ShopJobs(core_of(shop), owner=owner)


async def order(shop, order_id):
    return await shop.orders.get_order(order_id)


async def next_poll(shop, order_id):
    async with shop.db.read() as conn:
        return await conn.scalar(select(orders.c.next_poll_at).where(orders.c.id == order_id))


async def lease(shop, order_id):
    async with shop.db.read() as conn:
        return (
            await conn.execute(
                select(orders.c.lease_owner, orders.c.lease_until).where(orders.c.id == order_id)
            )
        ).one()


async def buy_at(shop, provider, user, key):
    """Buy from one named provider of the duo (the other is made to refuse)."""
    other = next(p for n, p in shop.providers.items() if n != provider)
    from core.providers.errors import OutOfStock

    other.rent_script = [OutOfStock("none")]
    got = await buy(shop, user, key)
    other.rent_script = []
    assert got.provider == provider
    return got


# ------------------------------------------------------------------------ wiring


async def test_apscheduler_registers_every_job_at_its_interval(shop):
    sched = build_scheduler(jobs_of(shop).tickers())
    found = {
        j.id: (j.trigger.interval.total_seconds(), j.max_instances, j.coalesce) for j in sched.get_jobs()
    }
    assert found == {
        "poll": (0.5, 1, True),  # a sixth of SMS_POLL_INTERVAL_SECONDS=3
        "expire": (5.0, 1, True),
        "recover": (30.0, 1, True),  # a quarter of RECOVERY_AFTER_SECONDS=120
        "retry_upstream": (15.0, 1, True),
        "resolve_overdue_holds": (60.0, 1, True),
        "reconcile": (900.0, 1, True),  # every 15 minutes by default
        "sync_catalogue": (600.0, 1, True),
        "reap_keys": (3600.0, 1, True),
        "retention": (21600.0, 1, True),  # every six hours
        "provider_balances": (300.0, 1, True),
        "finish_open": (5.0, 1, True),  # open numbers past their deadline, finished upstream
        "redraw": (5.0, 1, True),  # waiting orders' timers
        "delivery_stats": (30.0, 1, True),
        "rollups": (60.0, 1, True),
        "broadcasts": (5.0, 1, True),
    }


async def test_intervals_follow_settings(db, clock):
    s = Shop(
        db,
        clock,
        {"alpha": FlakyProvider("alpha", clock)},
        SMS_POLL_INTERVAL_SECONDS=9,
        RECONCILE_INTERVAL_SECONDS=300,
        RECOVERY_AFTER_SECONDS=60,
    )
    intervals = {t.name: t.interval_s for t in jobs_of(s).tickers()}
    assert intervals["poll"] == 1.0 and intervals["reconcile"] == 300 and intervals["recover"] == 15
    assert poll_tick(1) == 0.25


# -------------------------------------------------------------------------- poll


async def test_poll_records_the_code_once_and_notifies_once(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    alpha = shop.providers["alpha"]
    assert await jobs_of(shop).poll() == 0  # not due yet: next_poll_at is one interval away
    assert alpha.calls_of("batch_status") == 0
    alpha.deliver(o.activation_id, "424242")
    clock.advance(3)
    assert await jobs_of(shop).poll() == 1
    done = await order(shop, o.id)
    assert done.status == "completed" and done.code == "424242"
    assert (await shop.wallet(user)).balance == 400
    clock.advance(3)
    assert await jobs_of(shop, "B").poll() == 0  # a completed order is no longer polled
    assert await count(shop.db, outbox_t, outbox_t.c.order_id == o.id, outbox_t.c.kind == "completed") == 1
    assert (await lease(shop, o.id)) == (None, None)


async def test_poll_claims_only_due_orders_and_reschedules_them(shop, clock):
    user = await shop.user(1, funds=1000)
    early = await buy(shop, user, "k1")
    clock.advance(2)
    late = await buy(shop, user, "k2")
    clock.advance(1.5)  # early is due (3 s), late is not (due at +3)
    await jobs_of(shop).poll()
    [call] = [c for c in shop.providers["alpha"].calls if c[0] == "batch_status"]
    assert call[1] == early.activation_id
    tick = poll_tick(3)
    assert await next_poll(shop, early.id) == clock.now() + timedelta(seconds=3 - tick)
    assert await next_poll(shop, late.id) == late.created_at + timedelta(seconds=3)


async def test_poll_backs_off_for_old_orders(shop, clock):
    user = await shop.user(1, funds=1000)
    oldest = await buy(shop, user, "k1")
    clock.advance(500)
    middle = await buy(shop, user, "k2")
    clock.advance(500)
    newest = await buy(shop, user, "k3")
    clock.advance(3)
    await shop.orders.poll_due()
    now = clock.now()
    assert await next_poll(shop, newest.id) == now + timedelta(seconds=3)  # 3 s old: interval
    assert await next_poll(shop, middle.id) == now + timedelta(seconds=6)  # 503 s: 2 × 3
    assert await next_poll(shop, oldest.id) == now + timedelta(seconds=12)  # 1003 s: 4 × 3


async def test_poll_batches_per_provider_or_asks_one_by_one(duo, clock):
    user = await duo.user(1, funds=2000)
    a = [await buy_at(duo, "alpha", user, f"a{i}") for i in range(3)]
    b = [await buy_at(duo, "beta", user, f"b{i}") for i in range(3)]
    for o in a + b:
        duo.providers[o.provider].deliver(o.activation_id, "1111")
    clock.advance(3)
    assert await jobs_of(duo).poll() == 6
    alpha, beta = duo.providers["alpha"], duo.providers["beta"]
    assert alpha.calls_of("batch_status") == 1 and alpha.calls_of("status") == 0
    [batch] = [c for c in alpha.calls if c[0] == "batch_status"]
    assert sorted(batch[1].split(",")) == sorted(o.activation_id for o in a)
    assert beta.calls_of("status") == 3 and beta.calls_of("batch_status") == 0


async def test_provider_failures_mid_batch_lose_nothing(duo, clock):
    user = await duo.user(1, funds=2000)
    a = [await buy_at(duo, "alpha", user, f"a{i}") for i in range(2)]
    b = [await buy_at(duo, "beta", user, f"b{i}") for i in range(3)]
    for o in a + b:
        duo.providers[o.provider].deliver(o.activation_id, "2222")
    alpha, beta = duo.providers["alpha"], duo.providers["beta"]
    alpha.batch_script = [ProviderUnavailable("502")]
    beta.status_failures[b[1].activation_id] = ProviderUnavailable("timeout")
    clock.advance(3)
    assert await jobs_of(duo).poll() == 2  # beta's other two; alpha's batch and b[1] failed
    statuses = {o.id: (await order(duo, o.id)).status for o in a + b}
    assert [statuses[o.id] for o in b] == ["completed", "waiting", "completed"]
    assert all(statuses[o.id] == "waiting" for o in a)
    for o in a + b:  # leases end with the round, failures or not
        assert (await lease(duo, o.id)) == (None, None)
        if statuses[o.id] == "waiting":
            assert await next_poll(duo, o.id) == clock.now() + timedelta(seconds=2.5)
    beta.status_failures.clear()
    clock.advance(3)
    assert await jobs_of(duo, "B").poll() == 3
    assert [(await order(duo, o.id)).status for o in a + b] == ["completed"] * 5
    assert (await duo.wallet(user)).balance == 2000 - 5 * 100


async def test_poll_fails_and_refunds_an_order_the_provider_closed(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    shop.providers["alpha"].close(o.activation_id, ActivationState.CANCELLED)
    clock.advance(3)
    await jobs_of(shop).poll()
    assert (await order(shop, o.id)).status == "failed"
    assert (await shop.wallet(user)).available == 500


async def test_completed_order_stops_being_polled_when_closed_upstream(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    alpha = shop.providers["alpha"]
    alpha.deliver(o.activation_id, "1")
    clock.advance(3)
    await jobs_of(shop).poll()
    await shop.orders.request_another_code(o.id, user_id=user.id)  # polled again for code 2
    alpha.deliver(o.activation_id, "2")
    clock.advance(3)
    await jobs_of(shop).poll()
    assert await count(shop.db, outbox_t, outbox_t.c.kind == "code_extra") == 1
    alpha.close(o.activation_id, ActivationState.FINISHED)
    clock.advance(shop.settings.OPEN_ORDER_POLL_SECONDS)  # an open number's own cadence
    await jobs_of(shop).poll()
    assert await next_poll(shop, o.id) is None
    calls = alpha.calls_of("batch_status")
    clock.advance(30)
    await jobs_of(shop).poll()
    assert alpha.calls_of("batch_status") == calls
    assert (await shop.wallet(user)).balance == 400  # the extra code was free


async def test_crash_after_poll_claim_the_lease_expires_and_another_polls(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    alpha = shop.providers["alpha"]
    alpha.deliver(o.activation_id, "5150")
    alpha.batch_script = [Crash()]
    clock.advance(3)
    with pytest.raises(Crash):
        await jobs_of(shop, "A").poll()
    owner, until = await lease(shop, o.id)
    # A died mid-round: its lease lasts until the order is due again, then B takes it.
    assert owner == "A" and until == await next_poll(shop, o.id) == clock.now() + timedelta(seconds=2.5)
    clock.advance(2)
    assert await jobs_of(shop, "B").poll() == 0
    clock.advance(1)
    assert await jobs_of(shop, "B").poll() == 1
    assert (await order(shop, o.id)).code == "5150"


# ------------------------------------------------------------------------ expire


async def test_expire_refunds_and_notifies_once(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    assert await jobs_of(shop).expire() == 0
    clock.set(o.expires_at + timedelta(seconds=1))
    assert await jobs_of(shop).expire() == 1
    assert await jobs_of(shop, "B").expire() == 0
    final = await order(shop, o.id)
    assert final.status == "expired" and final.upstream_state == "cancelled"
    assert (await shop.wallet(user)).available == 500
    assert await count(shop.db, outbox_t, outbox_t.c.kind == "expired") == 1


async def test_expire_final_check_captures_a_late_code(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    shop.providers["alpha"].deliver(o.activation_id, "9")
    clock.set(o.expires_at + timedelta(seconds=1))
    assert await jobs_of(shop).expire() == 0
    assert (await order(shop, o.id)).status == "completed"
    assert (await shop.wallet(user)).balance == 400


async def test_expire_proceeds_when_the_final_check_fails(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    alpha = shop.providers["alpha"]
    alpha.status_failures[o.activation_id] = ProviderUnavailable("down")
    alpha.cancel_script = [ProviderUnavailable("down")]
    clock.set(o.expires_at + timedelta(seconds=1))
    assert await jobs_of(shop).expire() == 1
    final = await order(shop, o.id)
    assert final.status == "expired" and final.upstream_state == "cancel_pending"
    assert (await shop.wallet(user)).available == 500


async def test_crash_during_expiry_another_scheduler_finishes_after_the_lease(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    alpha = shop.providers["alpha"]
    alpha.status_failures[o.activation_id] = Crash()
    clock.set(o.expires_at + timedelta(seconds=1))
    with pytest.raises(Crash):
        await jobs_of(shop, "A").expire()
    assert (await order(shop, o.id)).status == "waiting"
    assert await jobs_of(shop, "B").expire() == 0  # A's lease still holds
    del alpha.status_failures[o.activation_id]
    clock.advance(jobs.WORK_LEASE_S + 1)
    assert await jobs_of(shop, "B").expire() == 1
    assert (await shop.wallet(user)).available == 500
    assert await count(shop.db, outbox_t, outbox_t.c.kind == "expired") == 1


# ----------------------------------------------------------------------- recover


async def test_recover_settles_a_lost_rent_and_waits_out_a_provider_failure(db, clock):
    s = Shop(db, clock, {"tv": FlakyProvider("tv", clock, idempotent=True)})
    await s.setup_catalogue()
    user = await s.user(1, funds=500)
    tv = s.providers["tv"]
    tv.rent_script = [AppliedButUnknown("timeout after send")]
    o = await buy(s, user, "k1")
    assert o.status == "reserving"
    assert await jobs_of(s).recover() == 0  # too young
    clock.advance(s.settings.RECOVERY_AFTER_SECONDS + 1)

    async def down(_req):
        raise ProviderUnavailable("down")

    tv.rent, real = down, tv.rent
    assert await jobs_of(s).recover() == 0
    assert (await order(s, o.id)).status == "reserving"
    assert (await lease(s, o.id)) == (None, None)
    tv.rent = real
    assert await jobs_of(s, "B").recover() == 1
    assert (await order(s, o.id)).status == "waiting" and tv.rents() == 1
    await s.assert_books_clean()


async def test_recover_without_a_trace_fails_and_refunds(shop, clock):
    from core.providers.errors import OutcomeUnknown

    user = await shop.user(1, funds=500)
    shop.providers["alpha"].rent_script = [OutcomeUnknown("lost before sending")]
    o = await buy(shop, user, "k1")
    clock.advance(shop.settings.RECOVERY_AFTER_SECONDS + 1)
    assert await jobs_of(shop).recover() == 1
    assert (await order(shop, o.id)).status == "failed"
    assert (await shop.wallet(user)).available == 500


# ---------------------------------------------------------------- retry upstream


async def test_retry_upstream_respects_the_early_cancel_window(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    alpha = shop.providers["alpha"]
    alpha.cancel_script = [EarlyCancelDenied("too soon", retry_at=clock.now() + timedelta(minutes=2))]
    await shop.orders.cancel(o.id, user_id=user.id)
    await shop.orders.drain_background()  # the upstream cancel runs after the answer
    assert (await order(shop, o.id)).upstream_state == "cancel_pending"
    clock.advance(60)
    assert await jobs_of(shop).retry_upstream() == 0  # the window is still closed
    clock.advance(61)
    assert await jobs_of(shop).retry_upstream() == 1
    assert (await order(shop, o.id)).upstream_state == "cancelled"
    assert alpha.calls_of("cancel", o.activation_id) == 2


async def test_retry_upstream_backs_off_on_failures(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    alpha = shop.providers["alpha"]
    alpha.cancel_script = [ProviderUnavailable("x")] * 3
    await shop.orders.cancel(o.id, user_id=user.id)  # attempt 1 fails: retry in 15 s
    await shop.orders.drain_background()  # the upstream cancel runs after the answer
    async with shop.db.read() as conn:
        first = await conn.scalar(select(orders.c.upstream_retry_at).where(orders.c.id == o.id))
    assert first == clock.now() + timedelta(seconds=15)
    clock.advance(15)
    assert await jobs_of(shop).retry_upstream() == 1  # attempt 2 fails: retry in 30 s
    async with shop.db.read() as conn:
        second = await conn.scalar(select(orders.c.upstream_retry_at).where(orders.c.id == o.id))
    assert second == clock.now() + timedelta(seconds=30)
    assert (await order(shop, o.id)).upstream_state == "cancel_pending"
    clock.advance(29)
    assert await jobs_of(shop).retry_upstream() == 0
    clock.advance(1)
    assert await jobs_of(shop).retry_upstream() == 1  # attempt 3 fails too
    clock.advance(60)
    assert await jobs_of(shop).retry_upstream() == 1
    assert (await order(shop, o.id)).upstream_state == "cancelled"
    assert (await shop.wallet(user)).available == 500  # refunded at once all along


async def test_completed_orders_stay_open_until_the_deadline_then_finish_once(shop, clock):
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    shop.providers["alpha"].deliver(o.activation_id, "1")
    clock.advance(3)
    await jobs_of(shop).poll()
    assert (await order(shop, o.id)).upstream_state == "active"  # open for more codes
    assert await jobs_of(shop).retry_upstream() == 0
    assert await jobs_of(shop).finish_open() == 0
    clock.set(o.expires_at)
    assert await jobs_of(shop).finish_open() == 1
    assert await jobs_of(shop).finish_open() == 0
    assert await jobs_of(shop).retry_upstream() == 0
    assert (await order(shop, o.id)).upstream_state == "finished"
    assert shop.providers["alpha"].calls_of("finish", o.activation_id) == 1


# ------------------------------------------------------------------ safety net


async def test_safety_net_settles_holds_past_timeout_through_the_order(shop, clock):
    user = await shop.user(1, funds=1000)
    waiting = await buy(shop, user, "k1")
    shop.providers["alpha"].rent_script = [AppliedButUnknown("lost")]
    reserving = await buy(shop, user, "k2")
    assert reserving.status == "reserving"
    clock.advance(shop.settings.ORDER_MAX_TTL_SECONDS + shop.settings.HOLD_GRACE_SECONDS - 1)
    assert await jobs_of(shop).resolve_overdue_holds() == 0
    clock.advance(2)
    assert await jobs_of(shop).resolve_overdue_holds() == 2
    assert (await order(shop, waiting.id)).status == "expired"
    assert (await order(shop, reserving.id)).status == "failed"
    async with shop.db.read() as conn:
        actors = set(
            (
                await conn.scalars(
                    select(order_events.c.actor).where(order_events.c.to_status.in_(("expired", "failed")))
                )
            ).all()
        )
    assert actors == {"safety_net"}
    assert (await shop.wallet(user)).available == 1000


# -------------------------------------------------------- catalogue, keys, beats


async def test_sync_catalogue_stores_offers_and_reports_a_failing_provider(duo, clock):
    alpha, beta = duo.providers["alpha"], duo.providers["beta"]

    async def alpha_catalogue():
        return [Offer("whatsapp", "GB", 33, 7)]

    async def beta_catalogue():
        raise ProviderUnavailable("catalogue down")

    alpha.catalogue, beta.catalogue = alpha_catalogue, beta_catalogue
    async with duo.db.begin() as conn:
        await conn.execute(
            insert(offers).values(
                provider="gone", service="whatsapp", country="GB", cost=1, stock=1, updated_at=clock.now()
            )
        )
    with pytest.raises(RuntimeError, match="beta"):
        await jobs_of(duo).sync_catalogue()
    async with duo.db.read() as conn:
        rows = {r.provider: (r.cost, r.stock) for r in await conn.execute(select(offers))}
    assert rows == {"alpha": (33, 7), "beta": (40, 10)}  # beta kept its last offers; gone pruned
    async with duo.db.read() as conn:
        beat = (await conn.execute(select(job_runs).where(job_runs.c.job == "sync_catalogue"))).one()
    assert beat.last_started_at == clock.now() and beat.last_finished_at is None
    assert "catalogue down" in beat.last_error


async def test_reap_keys_deletes_only_old_keys(shop, clock):
    async with shop.db.begin() as conn:
        for key, age in (("old", 8), ("new", 1)):
            at = clock.now() - timedelta(days=age)
            await conn.execute(
                insert(idempotency_keys).values(
                    key=key, scope="t", fingerprint="f", state="done", created_at=at, updated_at=at
                )
            )
    assert await jobs_of(shop).reap_keys() == 1
    async with shop.db.read() as conn:
        assert (await conn.scalars(select(idempotency_keys.c.key))).all() == ["new"]


async def test_heartbeats_record_start_finish_and_error(shop, clock):
    j = jobs_of(shop, "A")
    await j.expire()
    async with shop.db.read() as conn:
        beat = (await conn.execute(select(job_runs).where(job_runs.c.job == "expire"))).one()
    assert (beat.last_started_at, beat.last_finished_at, beat.last_error, beat.owner) == (
        clock.now(),
        clock.now(),
        None,
        "A",
    )
    finished = clock.now()
    clock.advance(10)

    async def broken(**_kw):
        raise RuntimeError("database on fire")

    shop.orders.expire_due = broken
    with pytest.raises(RuntimeError):
        await j.expire()
    async with shop.db.read() as conn:
        beat = (await conn.execute(select(job_runs).where(job_runs.c.job == "expire"))).one()
    assert beat.last_started_at == clock.now() and beat.last_finished_at == finished
    assert "database on fire" in beat.last_error
    del shop.orders.expire_due
    clock.advance(5)
    await j.expire()
    async with shop.db.read() as conn:
        beat = (await conn.execute(select(job_runs).where(job_runs.c.job == "expire"))).one()
    assert beat.last_finished_at == clock.now() and beat.last_error is None


async def test_run_all_once_runs_every_job(shop, clock):
    results = await jobs_of(shop).run_all_once()
    assert set(results) == {
        "poll",
        "expire",
        "recover",
        "retry_upstream",
        "resolve_overdue_holds",
        "reconcile",
        "sync_catalogue",
        "reap_keys",
        "retention",
        "provider_balances",
        "finish_open",
        "redraw",
        "delivery_stats",
        "rollups",
        "broadcasts",
    }
    async with shop.db.read() as conn:
        beats = {r.job: r.last_finished_at for r in await conn.execute(select(job_runs))}
    assert set(beats) == set(results) and all(v == clock.now() for v in beats.values())


async def test_claims_skip_orders_leased_by_someone_else(shop, clock):
    user = await shop.user(1, funds=1000)
    a = await buy(shop, user, "k1")
    b = await buy(shop, user, "k2")
    clock.set(a.expires_at + timedelta(seconds=1))
    got = await jobs.claim_orders(
        shop.db, owner="X", now=clock.now(), due=(orders.c.status == "waiting",), limit=1
    )
    assert len(got) == 1
    rest = await jobs.claim_orders(
        shop.db, owner="Y", now=clock.now(), due=(orders.c.status == "waiting",), limit=10
    )
    assert set(got) | set(rest) == {a.id, b.id} and not set(got) & set(rest)
    assert await jobs.release_orders(shop.db, got, "Y") == 0  # not Y's lease to end
    assert await jobs.release_orders(shop.db, got, "X") == 1
    async with shop.db.begin() as conn:  # leave no leases behind for the expiry below
        await conn.execute(update(orders).values(lease_owner=None, lease_until=None))


async def test_a_stop_lets_the_run_in_progress_finish(shop):
    import asyncio

    from scheduler import runner
    from scheduler.tickers import Ticker

    entered, release, finished = asyncio.Event(), asyncio.Event(), []

    async def slow_job() -> None:
        entered.set()
        await release.wait()
        finished.append(True)

    running: set = set()
    sched = runner.build_scheduler([Ticker("slow", 0.05, slow_job)], running)
    sched.start()
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.create_task(runner._stop(sched, running))
    await asyncio.sleep(0)  # let the stop begin while the job still waits
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert finished == [True]
