"""Retention on a real database, driven by the fake clock: old log rows go, young ones, owed
notifications, open orders' history and the books stay; batches are bounded and a run is
idempotent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from core import retention
from core.config import Settings
from core.db.tables import job_runs, order_events, outbox, processed_updates, quotes
from core.retention import RetentionPolicy, prune
from scheduler.tickers import ShopJobs
from tests.integration.orders_support import Shop
from tests.integration.scheduler_support import FlakyProvider, buy, core_of, count, dump

FAST = RetentionPolicy(pause_s=0)


@pytest.fixture
async def shop(db, clock):
    s = Shop(db, clock, {"alpha": FlakyProvider("alpha", clock)})
    await s.setup_catalogue()
    yield s
    await s.assert_books_clean()


async def add_updates(shop: Shop, first: int, n: int) -> None:
    now = shop.clock.now()
    async with shop.db.begin() as conn:
        await conn.execute(
            insert(processed_updates), [{"update_id": first + i, "received_at": now} for i in range(n)]
        )


async def add_outbox(shop: Shop, prefix: str, status: str, n: int = 1) -> None:
    now = shop.clock.now()
    async with shop.db.begin() as conn:
        await conn.execute(
            insert(outbox),
            [
                dict(
                    dedupe_key=f"{prefix}:{i}",
                    kind="code",
                    chat_id=1,
                    payload={},
                    status=status,
                    attempts=1,
                    next_attempt_at=now,
                    created_at=now,
                    sent_at=now if status == "sent" else None,
                )
                for i in range(n)
            ],
        )


async def add_quote(shop: Shop, qid: str, user_id: int, expires_in: timedelta) -> None:
    now = shop.clock.now()
    async with shop.db.begin() as conn:
        await conn.execute(
            insert(quotes).values(
                id=qid,
                user_id=user_id,
                service="whatsapp",
                country="GB",
                price=100,
                expires_at=now + expires_in,
                created_at=now,
            )
        )


async def keys(shop: Shop, column: Any) -> set[Any]:
    async with shop.db.read() as conn:
        return set((await conn.scalars(select(column))).all())


def books(snapshot: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    return {name: rows for name, rows in snapshot.items() if name not in retention.PRUNED_TABLES}


async def test_old_rows_go_and_everything_else_stays(shop, clock):
    user = await shop.user(1, funds=1_000)
    closed = await buy(shop, user, "k-closed")
    await shop.orders.cancel(closed.id, user_id=user.id)
    await shop.orders.drain_background()  # the upstream cancel runs after the answer
    still_open = await buy(shop, user, "k-open")
    await add_updates(shop, 1, 3)
    for status in ("sent", "failed", "unreachable", "pending"):
        await add_outbox(shop, f"old-{status}", status)
    await add_quote(shop, "old-unused", user.id, timedelta(minutes=10))
    used_quotes = await keys(shop, quotes.c.id) - {"old-unused"}
    assert len(used_quotes) == 2

    clock.advance(days=91)
    await add_updates(shop, 100, 2)
    await add_outbox(shop, "new-sent", "sent")
    await add_quote(shop, "young-expired", user.id, -timedelta(hours=1))
    events_before = await count(shop.db, order_events)
    open_events = await count(shop.db, order_events, order_events.c.order_id == still_open.id)
    assert open_events >= 1 and events_before > open_events
    before = await dump(shop.db)

    report = await prune(shop.db, clock, FAST)

    assert await keys(shop, processed_updates.c.update_id) == {100, 101}
    assert await keys(shop, outbox.c.dedupe_key) >= {"old-pending:0", "new-sent:0"}
    assert not await keys(shop, outbox.c.dedupe_key) & {"old-sent:0", "old-failed:0", "old-unreachable:0"}
    assert await keys(shop, order_events.c.order_id) == {still_open.id}
    assert await count(shop.db, order_events) == open_events
    assert await keys(shop, quotes.c.id) == used_quotes | {"young-expired"}
    assert report.deleted == {
        "update_log": 3,
        "outbox": 3,
        "order_events": events_before - open_events,
        "quotes": 1,
    }
    assert report.capped == []
    # The books: every row of every other table, unchanged.
    assert books(await dump(shop.db)) == books(before)

    await shop.orders.cancel(still_open.id, user_id=user.id)  # leave no hold behind

    await shop.orders.drain_background()  # the upstream cancel runs after the answer


async def test_closed_recently_keeps_its_events(shop, clock):
    """The period counts from when the order closed, not from when the event was written."""
    user = await shop.user(1, funds=500)
    o = await buy(shop, user, "k1")
    clock.advance(days=100)
    await shop.orders.cancel(o.id, user_id=user.id)
    await shop.orders.drain_background()  # the upstream cancel runs after the answer
    clock.advance(days=89)
    await prune(shop.db, clock, FAST)
    assert await keys(shop, order_events.c.order_id) == {o.id}
    clock.advance(days=2)
    await prune(shop.db, clock, FAST)
    assert await count(shop.db, order_events) == 0


async def test_pending_outbox_rows_stay_however_old(shop, clock):
    await add_outbox(shop, "owed", "pending", 5)
    clock.advance(days=365)
    report = await prune(shop.db, clock, FAST)
    assert report.deleted["outbox"] == 0
    assert await count(shop.db, outbox) == 5


async def test_batches_are_bounded_capped_per_run_and_idempotent(shop, clock):
    await add_updates(shop, 1, 1_234)
    await add_outbox(shop, "done", "sent", 1_100)
    clock.advance(days=8)
    policy = RetentionPolicy(batch_size=500, max_rows_per_run=1_000, pause_s=0)

    first = await prune(shop.db, clock, policy)
    assert first.deleted["update_log"] == 1_000 and first.deleted["outbox"] == 1_000
    assert first.batches == 4  # 500 + 500 of each kind, never more than a batch at once
    assert sorted(first.capped) == ["outbox", "update_log"]
    assert await count(shop.db, processed_updates) == 234
    assert await count(shop.db, outbox) == 100

    second = await prune(shop.db, clock, policy)
    assert second.deleted["update_log"] == 234 and second.deleted["outbox"] == 100
    assert second.batches == 2 and second.capped == []

    before = await dump(shop.db)
    third = await prune(shop.db, clock, policy)
    assert third.total == 0 and third.batches == 0
    assert await dump(shop.db) == before


async def test_a_batch_deletes_at_most_batch_size_rows(shop, clock):
    await add_updates(shop, 1, 1_201)
    clock.advance(days=8)
    report = await prune(shop.db, clock, RetentionPolicy(batch_size=400, pause_s=0))
    assert report.deleted["update_log"] == 1_201
    assert report.batches == 4  # 400 + 400 + 400 + 1


async def test_the_ticker_runs_retention_with_the_settings(db, clock):
    shop = Shop(db, clock, {"alpha": FlakyProvider("alpha", clock)}, RETENTION_UPDATE_LOG_DAYS=2)
    await shop.setup_catalogue()
    await add_updates(shop, 1, 2)
    clock.advance(days=1)
    await add_updates(shop, 10, 1)
    clock.advance(days=1, seconds=1)
    report = await ShopJobs(core_of(shop), owner="A").apply_retention()
    assert report.deleted["update_log"] == 2
    assert await keys(shop, processed_updates.c.update_id) == {10}
    async with db.read() as conn:
        run = (await conn.execute(select(job_runs).where(job_runs.c.job == "retention"))).one()
    assert run.last_error is None and run.last_finished_at == clock.now()


def test_defaults_and_settings():
    s = Settings(_env_file=None)
    assert (
        s.RETENTION_UPDATE_LOG_DAYS,
        s.RETENTION_OUTBOX_DAYS,
        s.RETENTION_ORDER_EVENTS_DAYS,
        s.RETENTION_QUOTES_HOURS,
        s.RETENTION_BATCH_SIZE,
    ) == (7, 7, 90, 24, 500)
    p = RetentionPolicy.from_settings(s)
    assert (p.update_log, p.outbox, p.order_events, p.quotes) == (
        timedelta(days=7),
        timedelta(days=7),
        timedelta(days=90),
        timedelta(hours=24),
    )
    assert {"processed_updates", "outbox", "order_events", "quotes"} == retention.PRUNED_TABLES
    with pytest.raises(ValueError, match="positive"):
        RetentionPolicy(batch_size=0)
