import asyncio

from sqlalchemy import func, select

from core import outbox
from core.db.tables import outbox as outbox_t


async def _enqueue(db, clock, n=3, chat=7):
    async with db.begin() as conn:
        for i in range(n):
            await outbox.enqueue(
                conn, kind="code", chat_id=chat, payload={"i": i}, dedupe_key=f"k{i}", now=clock.now()
            )


async def test_dedupe_key_queues_once(db, clock):
    await _enqueue(db, clock, n=1)
    async with db.begin() as conn:
        again = await outbox.enqueue(
            conn, kind="code", chat_id=7, payload={}, dedupe_key="k0", now=clock.now()
        )
    assert again is False
    async with db.read() as conn:
        queued = await conn.scalar(select(func.count()).select_from(outbox_t))
        assert queued == 1


async def test_two_senders_never_claim_the_same_row(db, clock):
    await _enqueue(db, clock, n=40)
    a, b = await asyncio.gather(
        outbox.claim_batch(db, owner="a", now=clock.now(), limit=25),
        outbox.claim_batch(db, owner="b", now=clock.now(), limit=25),
    )
    ids_a, ids_b = {m.id for m in a}, {m.id for m in b}
    assert not ids_a & ids_b
    assert len(ids_a | ids_b) == 40


async def test_lease_expiry_returns_rows_and_only_owner_can_finish(db, clock):
    await _enqueue(db, clock, n=1)
    [msg] = await outbox.claim_batch(db, owner="a", now=clock.now(), lease_seconds=30)
    assert await outbox.claim_batch(db, owner="b", now=clock.now()) == []
    clock.advance(31)
    [again] = await outbox.claim_batch(db, owner="b", now=clock.now())
    assert again.id == msg.id and again.attempts == 2
    assert await outbox.mark_sent(db, msg.id, "a", clock.now()) is False  # lost its lease
    assert await outbox.mark_sent(db, msg.id, "b", clock.now()) is True
    clock.advance(100)
    assert await outbox.claim_batch(db, owner="c", now=clock.now()) == []


async def test_retry_waits_then_gives_up(db, clock):
    await _enqueue(db, clock, n=1)
    for attempt in range(1, outbox.MAX_ATTEMPTS + 1):
        [msg] = await outbox.claim_batch(db, owner="a", now=clock.now())
        assert msg.attempts == attempt
        await outbox.mark_retry(db, msg.id, "a", clock.advance(0), "429", attempts=msg.attempts)
        clock.advance(1)
    async with db.read() as conn:
        status = await conn.scalar(select(outbox_t.c.status))
    assert status == outbox.FAILED


async def test_unreachable_is_final(db, clock):
    await _enqueue(db, clock, n=1)
    [msg] = await outbox.claim_batch(db, owner="a", now=clock.now())
    await outbox.mark_unreachable(db, msg.id, "a", "403 blocked")
    clock.advance(3600)
    assert await outbox.claim_batch(db, owner="a", now=clock.now()) == []


async def test_a_claim_never_takes_more_than_its_limit(db, clock):
    await _enqueue(db, clock, n=5)
    claimed = await outbox.claim_batch(db, owner="a", now=clock.now(), limit=1)
    assert len(claimed) == 1
    rest = await outbox.claim_batch(db, owner="b", now=clock.now(), limit=10)
    assert len(rest) == 4 and claimed[0].id not in {m.id for m in rest}
