"""Broadcasts: who gets one, batches at the rate, pause/resume/cancel, one per form."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

from core import broadcasts, outbox
from core.db.engine import Database
from core.db.tables import audit_log, orders, services, transfers, users
from core.db.tables import outbox as outbox_table
from core.errors import InvalidInput
from tests.integration.orders_support import Shop

ACTOR = "staff:alice"


async def make_user(shop: Shop, telegram_id: int, **flags) -> int:
    user = await shop.user(telegram_id)
    if flags:
        async with shop.db.begin() as conn:
            await conn.execute(update(users).where(users.c.id == user.id).values(**flags))
    return int(user.id)


async def add_order(shop: Shop, user_id: int, key: str, *, days_ago: float, status: str, service="whatsapp"):
    at = shop.clock.now() - timedelta(days=days_ago)
    async with shop.db.begin() as conn:
        wallet = await conn.scalar(select(users.c.wallet_account_id).where(users.c.id == user_id))
        await conn.execute(
            insert(transfers).values(
                id=f"h-{key}",
                kind="pending",
                debit_account_id=wallet,
                credit_account_id=1,
                amount=100,
                code="purchase",
                order_id=key,
                created_at=at,
            )
        )
        await conn.execute(
            insert(orders).values(
                id=key,
                user_id=user_id,
                service=service,
                country="GB",
                price=100,
                status=status,
                hold_transfer_id=f"h-{key}",
                upstream_state="none",
                created_at=at,
                updated_at=at,
            )
        )


@pytest.fixture
async def shop(db, clock) -> Shop:
    s = Shop(db, clock, {})
    await s.setup_catalogue()
    async with db.begin() as conn:
        await conn.execute(insert(services).values(code="google", name="Google", popularity=1))
    return s


async def new(shop: Shop, nonce: str, audience: str = "everyone", value: str | None = None):
    return await broadcasts.create(
        shop.db,
        nonce=nonce,
        text="<b>New</b> countries today",
        audience=audience,
        audience_value=value,
        actor=ACTOR,
        now=shop.clock.now(),
    )


async def queued_chats(shop: Shop, b_id: int) -> list[int]:
    async with shop.db.read() as conn:
        rows = await conn.execute(
            select(outbox_table.c.chat_id)
            .where(outbox_table.c.dedupe_key.like(f"broadcast:{b_id}:%"))
            .order_by(outbox_table.c.id)
        )
        return [r[0] for r in rows]


async def send_all_waiting(shop: Shop) -> int:
    """What the sender does, without Telegram: claim and mark every due row sent."""
    rows = await outbox.claim_batch(shop.db, owner="s", now=shop.clock.now(), limit=1000)
    for row in rows:
        assert await outbox.mark_sent(shop.db, row.id, "s", shop.clock.now())
    return len(rows)


async def test_audiences_pick_the_right_users(shop) -> None:
    a = await make_user(shop, 101, language="de")
    b = await make_user(shop, 102)
    await make_user(shop, 103, blocked=True)
    d = await make_user(shop, 104, unreachable=True)
    await make_user(shop, 105, language="en")
    await add_order(shop, a, "oa", days_ago=2, status="completed")
    await add_order(shop, b, "ob", days_ago=40, status="completed")
    await add_order(shop, d, "od", days_ago=1, status="completed")
    await add_order(shop, a, "oa2", days_ago=3, status="expired", service="google")
    expected = {
        ("everyone", None): [101, 102, 105],
        ("active", None): [101],
        ("service", "whatsapp"): [101, 102],
        ("service", "google"): [],  # an order that expired is not a purchase
        ("language", "de"): [101],
    }
    for i, ((audience, value), chats) in enumerate(expected.items()):
        b_, created = await new(shop, f"nonce-audience-{i}", audience, value)
        assert created and b_.total == len(chats), (audience, value)
        await broadcasts.enqueue_due(shop.db, shop.clock.now())
        assert sorted(await queued_chats(shop, b_.id)) == chats, (audience, value)
    with pytest.raises(InvalidInput):
        await new(shop, "nonce-bad", "service", "nosuchservice")
    with pytest.raises(InvalidInput):
        await new(shop, "nonce-bad2", "planet", None)


async def test_batches_follow_the_rate_and_finish(shop) -> None:
    for i in range(23):
        await make_user(shop, 1000 + i)
    b, _ = await new(shop, "nonce-rate-1")
    assert await broadcasts.enqueue_due(shop.db, shop.clock.now(), per_second=2, interval_s=5) == 10
    # Nothing was sent yet: the next run queues nothing more (the backlog is a full batch).
    assert await broadcasts.enqueue_due(shop.db, shop.clock.now(), per_second=2, interval_s=5) == 0
    rows = await outbox.claim_batch(shop.db, owner="s", now=shop.clock.now(), limit=4)
    for row in rows:
        await outbox.mark_sent(shop.db, row.id, "s", shop.clock.now())
    assert await broadcasts.enqueue_due(shop.db, shop.clock.now(), per_second=2, interval_s=5) == 4
    while await send_all_waiting(shop):
        await broadcasts.enqueue_due(shop.db, shop.clock.now(), per_second=2, interval_s=5)
    await broadcasts.enqueue_due(shop.db, shop.clock.now(), per_second=2, interval_s=5)
    async with shop.db.read() as conn:
        done = await broadcasts.get(conn, b.id)
        progress = await broadcasts.progress(conn, done)
    assert done.status == broadcasts.DONE and done.finished_at == shop.clock.now()
    assert (progress.sent, progress.queued, progress.total) == (23, 0, 23)
    assert sorted(await queued_chats(shop, b.id)) == [1000 + i for i in range(23)]


async def test_pause_takes_back_waiting_rows_and_resume_sends_each_once(shop) -> None:
    for i in range(12):
        await make_user(shop, 2000 + i)
    b, _ = await new(shop, "nonce-pause-1")
    await broadcasts.enqueue_due(shop.db, shop.clock.now(), per_second=1, interval_s=5)
    rows = await outbox.claim_batch(shop.db, owner="s", now=shop.clock.now(), limit=2)
    await outbox.mark_sent(shop.db, rows[0].id, "s", shop.clock.now())
    # rows[1] is still held by the sender: pause leaves it, it goes out.
    paused = await broadcasts.change(shop.db, b.id, "pause", actor=ACTOR, now=shop.clock.now())
    assert paused.status == broadcasts.PAUSED
    async with shop.db.read() as conn:
        assert (await broadcasts.progress(conn, paused)).queued == 1  # only the held row
    assert await broadcasts.enqueue_due(shop.db, shop.clock.now(), per_second=1, interval_s=5) == 0
    await outbox.mark_sent(shop.db, rows[1].id, "s", shop.clock.now())
    with pytest.raises(InvalidInput):
        await broadcasts.change(shop.db, b.id, "pause", actor=ACTOR, now=shop.clock.now())
    await broadcasts.change(shop.db, b.id, "resume", actor=ACTOR, now=shop.clock.now())
    for _ in range(10):
        await broadcasts.enqueue_due(shop.db, shop.clock.now(), per_second=1, interval_s=5)
        await send_all_waiting(shop)
    chats = await queued_chats(shop, b.id)
    assert sorted(chats) == [2000 + i for i in range(12)]  # everyone once, nobody twice
    async with shop.db.read() as conn:
        final = await broadcasts.get(conn, b.id)
        assert (await broadcasts.progress(conn, final)).sent == 12
        actions = [r[0] for r in await conn.execute(select(audit_log.c.action).order_by(audit_log.c.id))]
    assert final.status == broadcasts.DONE
    assert actions == ["broadcast.create", "broadcast.pause", "broadcast.resume"]


async def test_cancel_stops_it_for_good(shop) -> None:
    for i in range(8):
        await make_user(shop, 3000 + i)
    b, _ = await new(shop, "nonce-cancel-1")
    await broadcasts.enqueue_due(shop.db, shop.clock.now(), per_second=1, interval_s=3)
    cancelled = await broadcasts.change(shop.db, b.id, "cancel", actor=ACTOR, now=shop.clock.now())
    assert cancelled.status == broadcasts.CANCELLED and cancelled.enqueued == 0
    assert await queued_chats(shop, b.id) == []
    assert await broadcasts.enqueue_due(shop.db, shop.clock.now()) == 0
    assert await broadcasts.text_for(shop.db, b.id) is None  # a row already held is not sent
    with pytest.raises(InvalidInput):
        await broadcasts.change(shop.db, b.id, "resume", actor=ACTOR, now=shop.clock.now())


async def test_a_resubmitted_form_sends_once(shop, db) -> None:
    for i in range(3):
        await make_user(shop, 4000 + i)
    results = await asyncio.gather(*(new(shop, "nonce-same-form") for _ in range(3)))
    assert len({b.id for b, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, True]
    await broadcasts.enqueue_due(shop.db, shop.clock.now())
    await broadcasts.enqueue_due(shop.db, shop.clock.now())
    assert sorted(await queued_chats(shop, results[0][0].id)) == [4000, 4001, 4002]
    async with db.read() as conn:
        assert len(await broadcasts.recent(conn)) == 1


async def test_message_checks(shop) -> None:
    with pytest.raises(InvalidInput):
        await broadcasts.create(
            shop.db,
            nonce="n-empty",
            text="  ",
            audience="everyone",
            audience_value=None,
            actor=ACTOR,
            now=shop.clock.now(),
        )
    with pytest.raises(InvalidInput):
        await broadcasts.create(
            shop.db,
            nonce="n-long",
            text="x" * 4097,
            audience="everyone",
            audience_value=None,
            actor=ACTOR,
            now=shop.clock.now(),
        )


async def test_two_schedulers_queue_each_user_once_within_one_budget(shop, db) -> None:
    for i in range(30):
        await make_user(shop, 5000 + i)
    b, _ = await new(shop, "nonce-race-1")
    other = Database(db.url)
    try:
        counts = await asyncio.gather(
            broadcasts.enqueue_due(db, shop.clock.now(), per_second=2, interval_s=5),
            broadcasts.enqueue_due(other, shop.clock.now(), per_second=2, interval_s=5),
        )
    finally:
        await other.dispose()
    assert sorted(counts) == [0, 10]  # the broadcast's lock: one run queues, the other sees the backlog
    chats = await queued_chats(shop, b.id)
    assert len(chats) == len(set(chats)) == 10
