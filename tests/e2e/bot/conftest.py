"""The bot end to end: real aiogram client, real HTTP to the Bot API emulator, real database
(``db``: SQLite, and PostgreSQL when configured), the simulator provider on a FakeClock.

``Harness`` plays users through the emulator's user side and reads the shop's books through
core. Every wait is on a real condition with a deadline: the emulator's change signals
(``wait_for_reply``, ``wait_for_callback_answer``), or an update having been handled by the
dispatcher (``Harness.handled``). The notification sender is driven by hand
(``drain``) with a recording sleep, so rate-limit waits are checked without being waited.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiogram.types import Update
from sqlalchemy import func, select

from bot.app import BotApp, build_app, build_bot
from core import catalogue
from core.app import Core, build_core
from core.clock import FakeClock
from core.config import Settings
from core.db.engine import Database
from core.db.tables import orders, outbox, transfers
from core.invariants import check_invariants
from core.providers.simulator import SimulatorProvider
from core.wallets import WalletView
from numbershop.emulator import (
    CallbackAnswer,
    ChatView,
    EmulatedBot,
    MessageView,
    Press,
    running_emulator,
)

TOKEN = "777001:numbershop-bot-test"
WAIT = 10.0


class SleepRecorder:
    """Stands in for asyncio.sleep in the sender: records each wait, yields, returns."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@dataclass
class Harness:
    core: Core
    app: BotApp
    tg: EmulatedBot
    sim: SimulatorProvider
    clock: FakeClock
    sleeps: SleepRecorder
    _handled: Counter[int] = field(default_factory=Counter)
    _handled_changed: asyncio.Event = field(default_factory=asyncio.Event)

    # --- the user side ----------------------------------------------------------------

    async def say(self, user: int, text: str, *, first_name: str | None = None) -> ChatView:
        """The user writes; returns the chat once the bot has reacted."""
        update_id = self.tg.send_text(user, text, first_name=first_name)
        return await self.tg.wait_for_reply(update_id, WAIT)

    def find(self, user: int, prefix: str) -> tuple[MessageView, str]:
        """The newest bot message with a button whose text starts with ``prefix``."""
        chat = self.tg.chat(user)
        for msg in reversed(chat.bot_messages()):
            for b in msg.buttons:
                if b.text.startswith(prefix) and b.callback_data is not None:
                    return msg, b.callback_data
        raise AssertionError(f"no button starting {prefix!r}; last: {chat.last().button_texts}")

    def press_nowait(
        self,
        user: int,
        prefix: str | None = None,
        *,
        data: str | None = None,
        message_id: int | None = None,
        forge: bool = False,
    ) -> Press:
        if prefix is not None:
            msg, data = self.find(user, prefix)
            message_id = msg.message_id
        return self.tg.press_button(user, message_id, data=data, forge=forge)

    async def press(
        self,
        user: int,
        prefix: str | None = None,
        *,
        data: str | None = None,
        message_id: int | None = None,
        forge: bool = False,
    ) -> CallbackAnswer:
        """Tap a button; returns the callback answer (given after the handler's edits)."""
        pressed = self.press_nowait(user, prefix, data=data, message_id=message_id, forge=forge)
        answer = await self.tg.wait_for_callback_answer(pressed.query_id, WAIT)
        await self.handled(pressed.update_id)
        return answer

    def last_text(self, user: int) -> str:
        return self.tg.chat(user).last().text or ""

    async def pay_last_invoice(self, user: int) -> Any:
        payment = await self.tg.pay_invoice(user, timeout=WAIT)
        assert payment.status == "paid", payment
        await self.tg.wait_for_reply(payment.update_id, WAIT)
        return payment

    # --- the dispatcher ---------------------------------------------------------------

    def track(self) -> None:
        """Count updates as the dispatcher finishes them (dropped ones included)."""
        original = self.app.dp.feed_update

        async def feed_update(bot: Any, update: Update, **kwargs: Any) -> Any:
            try:
                return await original(bot, update, **kwargs)
            finally:
                self._handled[update.update_id] += 1
                self._handled_changed.set()

        self.app.dp.feed_update = feed_update  # type: ignore[method-assign]

    async def handled(self, update_id: int, times: int = 1) -> None:
        async with asyncio.timeout(WAIT):
            while self._handled[update_id] < times:
                self._handled_changed.clear()
                await self._handled_changed.wait()

    # --- the shop side ----------------------------------------------------------------

    async def drain(self) -> int:
        total = 0
        while n := await self.app.sender.drain_once():
            total += n
            await self.app.sender.settle_low()
        return total

    async def wallet(self, user: int) -> WalletView:
        return await self.core.wallets.show(user)

    async def orders_of(self, user: int) -> list[Any]:
        found = await self.core.wallets.show(user)
        return await self.core.orders.list_orders(user_id=found.user_id)

    async def count(self, table: Any, *where: Any) -> int:
        async with self.core.db.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(table).where(*where)))

    async def outbox_rows(self) -> list[Any]:
        async with self.core.db.read() as conn:
            return list((await conn.execute(select(outbox).order_by(outbox.c.id))).mappings())

    async def assert_books_clean(self) -> None:
        assert await check_invariants(self.core.db, self.clock.now(), 0) == []

    async def fund(self, user: int, amount: int, reference: str) -> None:
        await self.core.wallets.top_up(user, amount, source="test", reference=reference)


def make_settings(db: Database, base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": db.url,
        "BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": base_url,
        "PROVIDERS": "simulator",
        "MARKUP_PERCENT": 20,
        "STARS_PER_CURRENCY_UNIT": 50,
        "SHOP_CURRENCY": "USD",
    }
    return Settings(_env_file=None, **(values | overrides))


@contextlib.asynccontextmanager
async def shop_harness(
    db: Database,
    clock: FakeClock,
    *,
    app_options: dict[str, Any] | None = None,
    prepare: Callable[[SimulatorProvider], None] | None = None,
    settings: dict[str, Any] | None = None,
    set_commands: bool = False,
) -> AsyncIterator[Harness]:
    """A running shop; ``settings`` overrides ``make_settings``; ``set_commands`` lets the
    bot publish its command list at start (off by default: one request fewer per test)."""
    sim = SimulatorProvider(seed=7, clock=clock, code_delay_s=None)
    if prepare is not None:
        prepare(sim)
    async with db.begin() as conn:
        await catalogue.seed_reference_data(conn)
    await catalogue.sync_catalogue(db, sim, clock)
    async with running_emulator() as (emulator, base_url):
        tg = emulator.add_bot(TOKEN, username="numbershop_test_bot", first_name="numbershop")
        configured = make_settings(db, base_url, **(settings or {}))
        core = build_core(configured, clock=clock, providers={"simulator": sim}, db=db)
        sleeps = SleepRecorder()
        # The bot answers a slow callback with "working on it" after 2 s; a loaded test machine
        # can take that long for a Buy or a Cancel, and the journeys assert the real answer.
        # Tests about the early answer pass their own answer_deadline.
        options = {"answer_deadline": 20.0, **(app_options or {})}
        app = build_app(core, build_bot(configured), sender_sleep=sleeps, **options)
        harness = Harness(core=core, app=app, tg=tg, sim=sim, clock=clock, sleeps=sleeps)
        harness.track()
        stop = asyncio.Event()
        runner = asyncio.create_task(
            app.run(stop, polling_timeout=1, run_sender=False, set_commands=set_commands)
        )
        try:
            yield harness
        finally:
            stop.set()
            await asyncio.wait_for(runner, WAIT)
            await app.aclose()


@pytest.fixture
async def shop(db: Database, clock: FakeClock) -> AsyncIterator[Harness]:
    # Tests tap faster than any person; the limiter has its own test.
    async with shop_harness(db, clock, app_options={"rate_burst": 1000}) as harness:
        yield harness


__all__ = ["Harness", "SleepRecorder", "shop_harness", "orders", "transfers", "TOKEN", "WAIT"]
