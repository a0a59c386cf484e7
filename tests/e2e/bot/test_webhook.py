"""Webhook mode and shared state: the shop bot served on loopback, the emulator POSTing to it;
conversation state and rate limits shared through Redis by two workers.

The Redis tests need ``NUMBERSHOP_TEST_REDIS_URL`` (skipped with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramConflictError
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response

from bot import texts
from bot.app import BotApp, build_app, build_bot
from bot.fsm_storage import make_storage
from bot.middlewares.rate_limit import RedisTokenBucket, TokenBucket, make_bucket
from bot.webhook import SECRET_HEADER, WebhookConfig
from core import catalogue
from core.app import build_core
from core.clock import FakeClock
from core.config import Settings
from core.db.engine import Database
from core.providers.simulator import SimulatorProvider
from numbershop.emulator import EmulatedBot, running_emulator
from tests.e2e.bot.conftest import TOKEN, WAIT, Harness, SleepRecorder, make_settings
from tests.e2e.bot.test_journeys import buy_first_whatsapp

REDIS_ENV = "NUMBERSHOP_TEST_REDIS_URL"
SECRET = "webhook-Secret_42"
ALICE = 6001


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        print(f"skipped: set {REDIS_ENV}=redis://127.0.0.1:6379/<n> to run the Redis tests")
        pytest.skip(f"Redis test skipped: set {REDIS_ENV} to run it")
    return url


@contextlib.asynccontextmanager
async def shop_world(
    db: Database, clock: FakeClock
) -> AsyncIterator[tuple[EmulatedBot, Settings, SimulatorProvider]]:
    sim = SimulatorProvider(seed=7, clock=clock, code_delay_s=None)
    async with db.begin() as conn:
        await catalogue.seed_reference_data(conn)
    await catalogue.sync_catalogue(db, sim, clock)
    async with running_emulator() as (emulator, base_url):
        tg = emulator.add_bot(TOKEN, username="numbershop_test_bot", first_name="numbershop")
        yield tg, make_settings(db, base_url), sim


def harness(
    db: Database,
    clock: FakeClock,
    tg: EmulatedBot,
    settings: Settings,
    sim: SimulatorProvider,
    **app_options: Any,
) -> Harness:
    core = build_core(settings, clock=clock, providers={"simulator": sim}, db=db)
    sleeps = SleepRecorder()
    app = build_app(core, build_bot(settings), sender_sleep=sleeps, rate_burst=1000, **app_options)
    shop = Harness(core=core, app=app, tg=tg, sim=sim, clock=clock, sleeps=sleeps)
    shop.track()
    return shop


@contextlib.asynccontextmanager
async def serving_webhook(app: BotApp) -> AsyncIterator[str]:
    """``app`` in webhook mode on 127.0.0.1, a free port; yields the registered URL."""
    stop, listening = asyncio.Event(), asyncio.Event()
    config = WebhookConfig(url="http://127.0.0.1/telegram/hook", secret=SECRET, port=0)
    urls: list[str] = []

    def url_for_port(port: int) -> str:
        urls.append(f"http://127.0.0.1:{port}/telegram/hook")
        return urls[-1]

    task = asyncio.create_task(
        app.run_webhook(
            stop, config, run_sender=False, set_commands=False, url_for_port=url_for_port, listening=listening
        )
    )
    try:
        async with asyncio.timeout(WAIT):
            await asyncio.wait(
                {task, asyncio.create_task(listening.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
        if task.done():
            task.result()  # raises what went wrong
        yield urls[-1]
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT)


@contextlib.asynccontextmanager
async def polling(app: BotApp) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop, polling_timeout=1, run_sender=False, set_commands=False))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT)


async def test_a_user_is_served_by_webhook_and_polling_works_again_after(
    db: Database, clock: FakeClock
) -> None:
    async with shop_world(db, clock) as (tg, settings, sim):
        shop = harness(db, clock, tg, settings, sim)
        try:
            async with serving_webhook(shop.app) as url:
                info = await shop.app.bot.get_webhook_info()
                assert info.url == url and info.max_connections == 40
                assert set(info.allowed_updates or ()) >= {"message", "callback_query", "pre_checkout_query"}
                with pytest.raises(TelegramConflictError):
                    await shop.app.bot.get_updates(timeout=0)

                chat = await shop.say(ALICE, "/start", first_name="Alice")
                assert "Hi, Alice" in chat.last().text
                await shop.fund(ALICE, 500, "webhook-test")
                price, message_id = await buy_first_whatsapp(shop, ALICE)
                (order,) = await shop.orders_of(ALICE)
                assert order.status == "waiting" and order.price == price
                assert order.phone in shop.tg.chat(ALICE).message(message_id).text
                await shop.assert_books_clean()

            # Polling deletes the webhook at start: the next update comes by getUpdates.
            async with polling(shop.app):
                chat = await shop.say(ALICE, "/start")
                assert "Hi, Alice" in chat.last().text
            assert (await shop.app.bot.get_webhook_info()).url == ""
        finally:
            await shop.app.aclose()


async def test_the_webhook_refuses_requests_without_the_secret_and_telegram_retries(
    db: Database, clock: FakeClock
) -> None:
    async with shop_world(db, clock) as (tg, settings, sim):
        tg.webhook_retry_base_s = 0.001
        shop = harness(db, clock, tg, settings, sim)
        try:
            async with serving_webhook(shop.app) as url:
                body = {
                    "update_id": 999_999,
                    "message": {
                        "message_id": 1,
                        "date": 0,
                        "chat": {"id": ALICE, "type": "private"},
                        "from": {"id": ALICE, "is_bot": False, "first_name": "Mallory"},
                        "text": "/start",
                    },
                }
                async with aiohttp.ClientSession() as http:
                    for headers in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: SECRET[:-1]}):
                        async with http.post(url, json=body, headers=headers) as r:
                            assert r.status == 401, headers
                    async with http.post(url, data=b"{nope", headers={SECRET_HEADER: SECRET}) as r:
                        assert r.status == 400
                assert shop._handled[999_999] == 0  # nothing reached the dispatcher

                # Telegram holding a stale secret: refused, reported, retried; fixed, delivered.
                await shop.app.bot.set_webhook(url, secret_token="stale")
                update_id = tg.send_text(ALICE, "/start", first_name="Alice")
                await tg.wait_until(
                    lambda: tg.update(update_id).deliveries >= 2, WAIT, "two refused deliveries"
                )
                info = await shop.app.bot.get_webhook_info()
                assert info.last_error_message == "Wrong response from the webhook: 401 Unauthorized"
                assert info.pending_update_count == 1
                await shop.app.bot.set_webhook(url, secret_token=SECRET)
                chat = await tg.wait_for_reply(update_id, WAIT)
                assert "Hi, Alice" in chat.last().text
                await shop.handled(update_id)
                assert (await shop.app.bot.get_webhook_info()).pending_update_count == 0
        finally:
            await shop.app.aclose()


async def test_a_crashing_update_answers_500_and_the_redelivery_is_dropped_once_recorded(
    db: Database, clock: FakeClock
) -> None:
    async with shop_world(db, clock) as (tg, settings, sim):
        tg.webhook_retry_base_s = 0.001
        shop = harness(db, clock, tg, settings, sim)
        original = shop.app.dp.feed_update
        crashes = 1

        async def crash_once(bot: Any, update: Any, **kwargs: Any) -> Any:
            nonlocal crashes
            if crashes:
                crashes -= 1
                raise RuntimeError("worker bug")
            return await original(bot, update, **kwargs)

        shop.app.dp.feed_update = crash_once  # type: ignore[method-assign]
        try:
            async with serving_webhook(shop.app):
                update_id = tg.send_text(ALICE, "/start")
                record = await tg.wait_for_confirmation(update_id, WAIT)
                assert record.deliveries == 2
                info = await shop.app.bot.get_webhook_info()
                assert info.last_error_message == (
                    "Wrong response from the webhook: 500 Internal Server Error"
                )
                assert "Hi," in (tg.chat(ALICE).last().text or "")
        finally:
            await shop.app.aclose()


class SentMethods(BaseRequestMiddleware):
    """The Bot API methods the bot requested over HTTP itself, in order."""

    def __init__(self) -> None:
        self.names: list[str] = []

    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Response[Any]:
        self.names.append(method.__api_method__)
        return await make_request(bot, method)


def answers_logged(tg: EmulatedBot) -> list[tuple[int | None, bool]]:
    return [(c.chat_id, c.ok) for c in tg.calls if c.method == "answerCallbackQuery"]


@contextlib.asynccontextmanager
async def recorded(
    db: Database, clock: FakeClock, world: Any, *, answer_deadline: float
) -> AsyncIterator[tuple[Harness, SentMethods]]:
    """The shop, with the methods it requests itself recorded (``world`` from shop_world)."""
    tg, settings, sim = world
    shop = harness(db, clock, tg, settings, sim, answer_deadline=answer_deadline)
    sent = SentMethods()
    shop.app.bot.session.middleware(sent)
    try:
        yield shop, sent
    finally:
        await shop.app.aclose()


async def an_order_screen(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await shop.say(ALICE, "/buy whatsapp ID")


async def test_a_tap_is_answered_in_the_webhook_reply_and_by_a_request_when_polling(
    db: Database, clock: FakeClock
) -> None:
    async with (
        shop_world(db, clock) as world,
        recorded(db, clock, world, answer_deadline=20.0) as (shop, sent),
    ):
        tg = world[0]
        async with serving_webhook(shop.app):
            await an_order_screen(shop)
            buy = shop.press_nowait(ALICE, "✅ Buy for")
            await tg.wait_for_callback_answer(buy.query_id, WAIT)
            await tg.wait_for_confirmation(buy.update_id, WAIT)
            stale = shop.press_nowait(ALICE, data="no:such:button", message_id=buy.message_id, forge=True)
            answer = await tg.wait_for_callback_answer(stale.query_id, WAIT)
            await tg.wait_for_confirmation(stale.update_id, WAIT)

            assert (answer.text, answer.show_alert) == (texts.STALE_BUTTON, True)
            assert answers_logged(tg) == [(ALICE, True), (ALICE, True)]
            assert "answerCallbackQuery" not in sent.names
            assert "editMessageText" in sent.names  # the recorder sees the bot's requests
            (order,) = await shop.orders_of(ALICE)
            assert order.phone in shop.last_text(ALICE)

        async with polling(shop.app):
            again = await shop.press(ALICE, data="no:such:button", message_id=buy.message_id, forge=True)
        assert again.text == texts.STALE_BUTTON
        assert sent.names.count("answerCallbackQuery") == 1
        assert answers_logged(tg) == [(ALICE, True)] * 3


async def test_a_slow_tap_in_webhook_mode_is_told_working_on_it_by_one_request(
    db: Database, clock: FakeClock
) -> None:
    async with (
        shop_world(db, clock) as world,
        recorded(db, clock, world, answer_deadline=0.2) as (shop, sent),
    ):
        tg, _, sim = world
        async with serving_webhook(shop.app):
            await an_order_screen(shop)
            sim.set_faults(latency_s=1.0)
            press = shop.press_nowait(ALICE, "✅ Buy for")
            answer = await tg.wait_for_callback_answer(press.query_id, WAIT)
            assert answer.text == texts.WORKING
            await tg.wait_for_confirmation(press.update_id, WAIT)

            assert sent.names.count("answerCallbackQuery") == 1
            assert answers_logged(tg) == [(ALICE, True)]  # the reply carried no second one
            (order,) = await shop.orders_of(ALICE)
            assert order.phone in shop.last_text(ALICE)


async def test_a_tap_recorded_but_not_answered_is_answered_on_its_redelivery(
    db: Database, clock: FakeClock
) -> None:
    """A worker dying after the update log recorded a tap but before its 200 left: the
    answer in that reply never ran, and the redelivery is dropped as already handled."""
    async with (
        shop_world(db, clock) as world,
        recorded(db, clock, world, answer_deadline=20.0) as (shop, sent),
    ):
        tg = world[0]
        tg.webhook_retry_base_s = 0.001
        original = shop.app.dp.feed_update
        lost = 1

        async def lose_the_first_taps_reply(bot: Any, update: Any, **kwargs: Any) -> Any:
            nonlocal lost
            result = await original(bot, update, **kwargs)
            if update.callback_query is not None and lost:
                lost -= 1
                raise RuntimeError("the worker died before answering")
            return result

        shop.app.dp.feed_update = lose_the_first_taps_reply  # type: ignore[method-assign]
        async with serving_webhook(shop.app):
            await shop.say(ALICE, "/start")
            message_id = tg.chat(ALICE).last().message_id
            press = shop.press_nowait(ALICE, data="no:such:button", message_id=message_id, forge=True)
            answer = await tg.wait_for_callback_answer(press.query_id, WAIT)
            record = await tg.wait_for_confirmation(press.update_id, WAIT)

            assert record.deliveries == 2
            assert answer.text is None  # the alert went with the lost reply
            assert answers_logged(tg) == [(ALICE, True)]
            assert "answerCallbackQuery" not in sent.names


# ------------------------------------------------------------------ shared state (Redis)


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "memory-control"])
async def test_a_custom_amount_asked_by_one_worker_is_understood_by_another(
    db: Database, clock: FakeClock, redis_url: str, shared: bool
) -> None:
    user = 7_000 + uuid.uuid4().int % 1_000_000  # fresh conversation keys in a shared Redis
    async with shop_world(db, clock) as (tg, settings, sim):
        settings = settings.model_copy(update={"REDIS_URL": redis_url})
        storage = {} if shared else {"storage": MemoryStorage()}
        one = harness(db, clock, tg, settings, sim, **storage)
        storage = {} if shared else {"storage": MemoryStorage()}
        two = harness(db, clock, tg, settings, sim, **storage)
        try:
            async with polling(one.app):
                chat = await one.say(user, "/topup")
                assert "Type the amount to add in USD" in chat.last().text
            async with polling(two.app):
                chat = await two.say(user, "7.50")
            invoice = chat.last().invoice
            if shared:
                assert invoice is not None and invoice.total_amount == 375  # 50 Stars a dollar
            else:  # the control: without shared storage the second worker cannot know
                assert invoice is None
        finally:
            await one.app.aclose()
            await two.app.aclose()


async def test_two_rate_limiters_over_one_redis_share_the_budget(redis_url: str) -> None:
    prefix = f"test:rl:{uuid.uuid4().hex}"
    one = RedisTokenBucket(redis_url, rate=0.001, burst=3, prefix=prefix)
    two = RedisTokenBucket(redis_url, rate=0.001, burst=3, prefix=prefix)
    try:
        taken = [await (one if i % 2 else two).acquire(42) for i in range(5)]
        assert taken == [True, True, True, False, False]
        assert await one.acquire(43)  # per user
        ttl = await one.redis.pttl(f"{prefix}:42")
        assert 0 < ttl <= 86_401_000  # idle buckets expire
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_redis_outage_does_not_refuse_users() -> None:
    bucket = RedisTokenBucket("redis://127.0.0.1:1/0", rate=1, burst=1)
    try:
        assert await bucket.acquire(1) and await bucket.acquire(1)
    finally:
        await bucket.aclose()


def test_without_redis_state_and_limits_stay_in_the_process() -> None:
    assert isinstance(make_storage(None), MemoryStorage)
    assert isinstance(make_bucket(None, 1, 1), TokenBucket)
