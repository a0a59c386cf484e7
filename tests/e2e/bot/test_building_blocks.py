"""The bot's small parts on their own: update log, catalogue cache, rate limiter, limits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiogram.types import Chat, Message, SuccessfulPayment, User

from bot.context import TtlCache
from bot.handlers import routers
from bot.middlewares import RateLimit, TokenBucket, UpdateLog
from bot.sender import Limits


async def test_update_log_batches_and_dedupes(db, clock) -> None:
    log = UpdateLog(db, clock)
    assert await asyncio.gather(*(log.handled(i) for i in (1, 2, 3))) == [False] * 3
    first = await asyncio.gather(*(log.record(i) for i in (1, 2, 2, 3, 1)))
    assert first == [True, True, False, True, False]  # duplicates within one batch, too
    assert await log.record(2) is False
    assert await asyncio.gather(log.record(3), log.record(4)) == [False, True]
    assert await asyncio.gather(*(log.handled(i) for i in (1, 4, 5, 1))) == [True, True, False, True]


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_ttl_cache_shares_loads_expires_and_forgets_errors() -> None:
    now = FakeTime()
    cache = TtlCache(ttl=5, monotonic=now)
    loads = 0
    gate = asyncio.Event()

    async def load() -> int:
        nonlocal loads
        loads += 1
        await gate.wait()
        return loads

    waiting = asyncio.gather(cache.get("k", load), cache.get("k", load))
    await asyncio.sleep(0)
    gate.set()
    assert await waiting == [1, 1] and loads == 1
    now.now += 4.9
    assert await cache.get("k", load) == 1
    now.now += 0.2
    assert await cache.get("k", load) == 2

    async def broken() -> int:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await cache.get("x", broken)
    assert await cache.get("x", load) == 3  # the failure was not cached


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    now = FakeTime()
    bucket = TokenBucket(rate=2, burst=3, monotonic=now)
    assert [bucket.allow(1) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(2)  # per user
    now.now += 0.5
    assert bucket.allow(1) and not bucket.allow(1)


async def test_limits_reserve_waits_without_polling() -> None:
    now, waits = FakeTime(), []

    async def sleep(seconds: float) -> None:
        waits.append(round(seconds, 3))

    limits = Limits(per_second=10, per_chat_interval=1.0, monotonic=now, sleep=sleep)
    for _ in range(12):
        await limits.call_slot()
    assert waits == [0.1, 0.2]  # a burst of 10, then spaced at the rate
    waits.clear()
    for _ in range(3):
        await limits.chat_slot(42)
    await limits.chat_slot(43)
    assert waits == [1.0, 2.0]  # one chat: a second apart; another chat: no wait
    waits.clear()
    limits.pause(7)
    await limits.call_slot()
    assert waits and waits[0] >= 7


async def test_filters_run_on_the_loop_and_still_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiogram runs a synchronous filter through ``asyncio.to_thread``; none of the shop's
    filters go that way, and the magic ones still decide as before."""

    async def no_threads(*_: object, **__: object) -> None:
        raise AssertionError("a filter ran in a thread")

    monkeypatch.setattr(asyncio, "to_thread", no_threads)
    user, chat = User(id=1, is_bot=False, first_name="A"), Chat(id=1, type="private")
    paid = Message(
        message_id=1,
        date=0,
        chat=chat,
        from_user=user,
        successful_payment=SuccessfulPayment(
            currency="XTR",
            total_amount=250,
            invoice_payload="p",
            telegram_payment_charge_id="c",
            provider_payment_charge_id="p",
        ),
    )
    text = Message(message_id=2, date=0, chat=chat, from_user=user, text="whats")
    checked = 0
    for router in routers():
        for handler in router.message.handlers:
            for f in handler.filters or []:
                assert f.awaitable, (router.name, handler.callback.__name__)
                if getattr(f.callback, "magic", None) is not None:
                    checked += 1
                    for event in (paid, text):
                        assert bool(await f.call(event)) == bool(f.callback.magic.resolve(event))
    assert checked >= 3  # F.successful_payment, F.text, ~F.text.startswith("/")


async def test_rate_limit_warns_once_per_period_and_forgets_old_warnings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[int] = []

    async def answer(self: Message, text: str, **_: object) -> None:
        sent.append(self.chat.id)

    monkeypatch.setattr(Message, "answer", answer)
    now = FakeTime()
    limit = RateLimit(TokenBucket(rate=0.001, burst=0, monotonic=now))  # everyone is over

    async def handler(event: object, data: object) -> None:
        raise AssertionError("a limited update must not reach its handler")

    async def write(user_id: int) -> None:
        user = User(id=user_id, is_bot=False, first_name="u")
        message = Message(
            message_id=1,
            date=datetime.now(UTC),
            text="hi",
            from_user=user,
            chat=Chat(id=user_id, type="private"),
        )
        assert await limit(handler, message, {"event_from_user": user}) is None

    await write(1)
    await write(1)
    now.now += RateLimit.WARN_EVERY_S
    await write(1)
    assert sent == [1, 1]  # one sentence per quiet period, not one per message

    for user_id in range(2, 5002):  # a stream of distinct users, one a second
        now.now += 1.0
        await write(user_id)
    assert len(sent) == 2 + 5000
    # Only warnings still inside their quiet period are worth remembering.
    assert len(limit._warned) <= RateLimit.WARN_EVERY_S + 1


async def test_an_update_cut_off_mid_handling_is_handled_again_and_a_finished_one_is_not(db, clock) -> None:
    from aiogram.types import Update

    from bot.middlewares.dedupe import UpdateDedupe

    dedupe = UpdateDedupe(UpdateLog(db, clock))
    calls: list[bool] = []

    async def killed(_event: object, data: dict) -> None:
        calls.append(data["redelivered"])
        raise asyncio.CancelledError  # the worker stops mid-update

    async def handled(_event: object, data: dict) -> str:
        calls.append(data["redelivered"])
        return "done"

    update = Update(update_id=77)
    with pytest.raises(asyncio.CancelledError):
        await dedupe(killed, update, {})
    assert await dedupe(handled, update, {}) == "done"  # the redelivery is handled
    assert await dedupe(handled, update, {}) is None  # a finished update is dropped
    assert calls == [False, False]
