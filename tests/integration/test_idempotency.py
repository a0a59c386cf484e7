import asyncio
from datetime import timedelta

import pytest

from core import idempotency
from core.errors import AlreadyInProgress, IdempotencyConflict


async def _claim(db, clock, key="k", fp="f", **kw):
    async with db.begin() as conn:
        return await idempotency.claim(conn, key=key, scope="test", fingerprint=fp, now=clock.now(), **kw)


async def test_fresh_then_in_progress_then_replay(db, clock):
    assert await _claim(db, clock) is None
    with pytest.raises(AlreadyInProgress):
        await _claim(db, clock)
    async with db.begin() as conn:
        await idempotency.finish(conn, "k", {"order_id": "o1"}, clock.now())
    assert await _claim(db, clock) == {"order_id": "o1"}


async def test_different_request_same_key_conflicts(db, clock):
    await _claim(db, clock)
    with pytest.raises(IdempotencyConflict):
        await _claim(db, clock, fp="other")


async def test_crashed_attempt_with_result_replays_without_redoing(db, clock):
    await _claim(db, clock, lock_seconds=10)
    async with db.begin() as conn:
        await idempotency.set_result(conn, "k", {"order_id": "o1"}, clock.now())
    clock.advance(11)
    assert await _claim(db, clock) == {"order_id": "o1"}


async def test_crashed_attempt_without_result_is_taken_over(db, clock):
    await _claim(db, clock, lock_seconds=10)
    clock.advance(11)
    assert await _claim(db, clock) is None  # we own it now
    with pytest.raises(AlreadyInProgress):
        await _claim(db, clock)


async def test_claim_rolls_back_with_its_transaction(db, clock):
    with pytest.raises(RuntimeError):
        async with db.begin() as conn:
            await idempotency.claim(conn, key="k", scope="test", fingerprint="f", now=clock.now())
            raise RuntimeError("effect failed")
    assert await _claim(db, clock) is None


async def test_concurrent_claims_one_winner(db, clock):
    async def attempt():
        try:
            return await _claim(db, clock)
        except AlreadyInProgress:
            return "busy"

    results = await asyncio.gather(*(attempt() for _ in range(20)))
    assert results.count(None) == 1
    assert results.count("busy") == 19


async def test_reap_deletes_only_old_keys(db, clock):
    await _claim(db, clock, key="old")
    clock.advance(timedelta(days=8).total_seconds())
    await _claim(db, clock, key="new")
    assert await idempotency.reap(db, clock.now()) == 1
    with pytest.raises(AlreadyInProgress):
        await _claim(db, clock, key="new")
    assert await _claim(db, clock, key="old") is None
