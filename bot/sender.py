"""The notification sender: drains core's outbox into Telegram within its rate limits.

Core writes an outbox row in the same transaction as the state change it reports (a code
arrived, an order expired and was refunded, …). This sender, running in the bot process,
turns rows into messages:

* **At most once per sender.** Rows are leased with ``outbox.claim_batch`` (a conditional
  UPDATE, ``SKIP LOCKED`` on PostgreSQL), so two bot processes never hold the same row, and
  ``mark_*`` only succeeds for the lease owner. A crashed sender's rows come back when the
  lease ends. The primary message of a row is sent first and the row is marked right after;
  secondary edits never make a row retry, so a retry never duplicates a delivered message.
* **Rate limits.** About ``per_second`` calls overall (token bucket), and rows to one chat
  at least ``per_chat_interval`` apart. A 429 pauses *all* sending for ``retry_after`` (it is
  a bot-wide flood limit), then the same call is made again; after a few 429s in a row the
  row is put back for ``retry_after`` later.
* **Priorities.** Redraws of a waiting order's message and broadcasts (``outbox
  .LOW_PRIORITY_KINDS``) take at most ``low_share`` of ``per_second``, only what the other
  rows leave, and never hold up the next batch of codes (``drain_once``).
* **Blocked users.** A 403 marks the user unreachable and the row ``unreachable`` (final:
  no retry storm); other rows for that chat in the batch are settled the same way without
  calling Telegram again.

``sleep`` and ``monotonic`` are injectable so tests can check waits without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.types import InlineKeyboardMarkup

from bot import errors, keyboards, texts
from bot.context import order_screen
from bot.i18n import use_locale
from core import broadcasts, outbox
from core.app import Core
from core.backoff import Backoff
from core.errors import ShopError
from core.orders import OrderView
from core.orders.timer import REMINDER, minutes_left
from core.outbox import OutboxMessage
from core.users import mark_chat_unreachable

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_AFTER_TRIES = 3
MAX_BACKOFF_S = 300


class Undeliverable(Exception):
    """A row no retry can deliver (unknown kind): marked failed at once."""


class RetryLater(Exception):
    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds


class Limits:
    """Bot-wide token bucket plus per-chat spacing; waits are reserved, never polled.

    Each caller reserves its slot synchronously and then sleeps for its own deficit, so
    concurrent senders queue fairly and nothing loops on a clock.
    """

    def __init__(
        self,
        *,
        per_second: float,
        per_chat_interval: float,
        monotonic: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.rate = per_second
        self.per_chat_interval = per_chat_interval
        self.monotonic = monotonic
        self.sleep = sleep
        self._tokens = float(per_second)
        self._at = monotonic()
        self._paused_until = 0.0
        self._chat_next: dict[int, float] = {}

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self.monotonic() + seconds)

    async def call_slot(self) -> None:
        now = self.monotonic()
        self._tokens = min(float(self.rate), self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        wait = max(0.0, -self._tokens / self.rate, self._paused_until - now)
        if wait > 0:
            await self.sleep(wait)

    async def chat_slot(self, chat_id: int) -> None:
        now = self.monotonic()
        start = max(now, self._chat_next.get(chat_id, now))
        self._chat_next[chat_id] = start + self.per_chat_interval
        if len(self._chat_next) > 10_000:
            self._chat_next = {c: t for c, t in self._chat_next.items() if t > now}
        if start > now:
            await self.sleep(start - now)


class LowPriorityLimiter:
    """At most ``per_second`` low-priority calls in any one-second window (sliding), each
    call reserved at the time it will be made. ``free`` says how many may be claimed now, so
    the sender never takes more redraws from the outbox than it can send soon: the rest stay
    pending, where a newer redraw of the same message replaces them."""

    def __init__(
        self,
        *,
        per_second: float,
        monotonic: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.per_window = max(1, int(per_second))
        self.monotonic = monotonic
        self.sleep = sleep
        self._times: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - 1.0:
            self._times.popleft()

    def free(self) -> int:
        now = self.monotonic()
        self._trim(now)
        return max(0, self.per_window - len(self._times))

    async def slot(self) -> None:
        now = self.monotonic()
        self._trim(now)
        at = now
        if self._times:
            at = max(at, self._times[-1])
        if len(self._times) >= self.per_window:
            at = max(at, self._times[-self.per_window] + 1.0)
        self._times.append(at)
        if at > now:
            await self.sleep(at - now)


class OutboxSender:
    def __init__(
        self,
        bot: Bot,
        core: Core,
        *,
        owner: str | None = None,
        per_second: float = 25.0,
        per_chat_interval: float = 1.0,
        batch_size: int = 50,
        lease_seconds: float = 120.0,
        idle_seconds: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        on_unreachable: Callable[[int], None] | None = None,
        low_share: float = 0.2,
        locale_for: Callable[[int], Awaitable[str]] | None = None,
    ) -> None:
        self.bot = bot
        self.core = core
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.idle_seconds = idle_seconds
        self.limits = Limits(
            per_second=per_second, per_chat_interval=per_chat_interval, monotonic=monotonic, sleep=sleep
        )
        self.low = LowPriorityLimiter(per_second=per_second * low_share, monotonic=monotonic, sleep=sleep)
        self._low_tasks: set[asyncio.Task[None]] = set()
        self.on_unreachable = on_unreachable
        self.locale_for = locale_for
        self._wake = asyncio.Event()
        self.stats: dict[str, int] = defaultdict(int)

    @property
    def currency(self) -> str:
        return self.core.settings.SHOP_CURRENCY

    def wake(self) -> None:
        """Look at the outbox now instead of after the idle pause."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until ``stop`` is set; a failing database only delays, never kills, it."""
        failures = 0
        while not stop.is_set():
            try:
                handled = await self.drain_once()
                failures = 0
            except Exception:
                failures += 1
                log.exception("outbox drain failed")
                handled = 0
            if handled:
                continue
            self._wake.clear()
            idle = self.idle_seconds * min(2**failures, 20)
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()

    async def drain_once(self) -> int:
        """Claim one batch and deliver it; returns how many rows were claimed.

        Codes and every other notice first: a batch of them is delivered before this
        returns. Low-priority rows (redraws, broadcasts) are claimed only when that batch
        left room, only as many as their share of the budget allows now, and are delivered
        in the background, so a code claimed by the next drain never waits behind them."""
        now = self.core.clock.now()
        rows = await outbox.claim_batch(
            self.core.db,
            owner=self.owner,
            now=now,
            limit=self.batch_size,
            lease_seconds=self.lease_seconds,
            low=False,
        )
        low: list[OutboxMessage] = []
        free = self.low.free()
        if len(rows) < self.batch_size and free > 0:
            low = await outbox.claim_batch(
                self.core.db,
                owner=self.owner,
                now=now,
                limit=free,
                lease_seconds=self.lease_seconds,
                low=True,
            )
        if low:
            task = asyncio.get_running_loop().create_task(self._deliver_low(low))
            self._low_tasks.add(task)
            task.add_done_callback(self._low_tasks.discard)
        if rows:
            by_chat: dict[int, list[OutboxMessage]] = defaultdict(list)
            for row in rows:
                by_chat[row.chat_id].append(row)
            await asyncio.gather(*(self._chat_rows(chat, group) for chat, group in by_chat.items()))
        return len(rows) + len(low)

    async def _deliver_low(self, rows: list[OutboxMessage]) -> None:
        by_chat: dict[int, list[OutboxMessage]] = defaultdict(list)
        for row in rows:
            by_chat[row.chat_id].append(row)
        await asyncio.gather(*(self._chat_rows(chat, group, low=True) for chat, group in by_chat.items()))

    async def settle_low(self) -> None:
        """Wait for the low-priority rows in flight (tests, shutdown)."""
        while self._low_tasks:
            await asyncio.gather(*list(self._low_tasks), return_exceptions=True)

    async def _chat_rows(self, chat_id: int, rows: list[OutboxMessage], *, low: bool = False) -> None:
        unreachable = False
        for row in rows:
            if unreachable:
                await outbox.mark_unreachable(self.core.db, row.id, self.owner, "bot was blocked")
                self.stats["unreachable"] += 1
                continue
            if low and not await self._redraw_wanted(row):
                # The order moved on (a code, a cancel): its own notice redrew the message.
                await outbox.mark_sent(self.core.db, row.id, self.owner, self.core.clock.now())
                self.stats["skipped"] += 1
                continue
            await self.limits.chat_slot(chat_id)
            if low:
                await self.low.slot()
            unreachable = await self._one(row)

    async def _redraw_wanted(self, row: OutboxMessage) -> bool:
        """A timer row (redraw, reminder) is worth sending only while its order waits."""
        if row.kind not in (outbox.ORDER_REDRAW, outbox.ORDER_REMINDER):
            return True
        if not row.order_id:
            return False
        try:
            order = await self.core.orders.get_order(row.order_id)
        except ShopError:
            return False
        return order.status == "waiting" and bool(order.message_id)

    async def _one(self, row: OutboxMessage) -> bool:
        """Deliver one row and settle it; True if the chat turned out to be unreachable."""
        db, owner = self.core.db, self.owner
        try:
            # Rendered in the recipient's language, not the one of whatever update is running.
            locale = await self.locale_for(row.chat_id) if self.locale_for is not None else None
            with use_locale(locale):
                await self._deliver(row)
        except TelegramForbiddenError as exc:
            log.info("chat %s blocked the bot; row %s unreachable", row.chat_id, row.id)
            await mark_chat_unreachable(db, row.chat_id)
            await outbox.mark_unreachable(db, row.id, owner, str(exc))
            if self.on_unreachable is not None:
                self.on_unreachable(row.chat_id)
            self.stats["unreachable"] += 1
            return True
        except RetryLater as exc:
            await outbox.mark_retry(db, row.id, owner, self._at(exc.seconds), str(exc), attempts=row.attempts)
            self.stats["retry"] += 1
            return False
        except (TelegramBadRequest, Undeliverable) as exc:
            log.warning("row %s (%s) refused by Telegram: %s", row.id, row.kind, exc)
            await outbox.mark_failed(db, row.id, owner, str(exc))
            self.stats["failed"] += 1
            return False
        except Exception as exc:
            log.warning("row %s (%s) not sent: %s", row.id, row.kind, exc)
            backoff = Backoff(base=5, cap=MAX_BACKOFF_S, floor=1).delay(row.attempts - 1)
            await outbox.mark_retry(db, row.id, owner, self._at(backoff), repr(exc), attempts=row.attempts)
            self.stats["retry"] += 1
            return False
        if not await outbox.mark_sent(db, row.id, owner, self.core.clock.now()):
            log.warning("row %s: lease lost before it was marked sent", row.id)
        self.stats["sent"] += 1
        return False

    def _at(self, seconds: float) -> Any:
        return self.core.clock.now() + timedelta(seconds=seconds)

    # --- calls ----------------------------------------------------------------------

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """One Bot API call inside the limits; 429 pauses everyone and tries again."""
        for attempt in range(1, RETRY_AFTER_TRIES + 1):
            await self.limits.call_slot()
            try:
                return await make()
            except TelegramRetryAfter as exc:
                self.stats["retry_after"] += 1
                log.warning("flood limit: pausing all sends for %ss", exc.retry_after)
                self.limits.pause(exc.retry_after)
                if attempt == RETRY_AFTER_TRIES:
                    raise RetryLater(exc.retry_after, str(exc)) from exc
        raise AssertionError("unreachable")

    async def _send(self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        await self._call(lambda: self.bot.send_message(chat_id, text, reply_markup=markup))

    async def _edit(
        self, chat_id: int, message_id: int | None, text: str, markup: InlineKeyboardMarkup | None
    ) -> bool:
        """Secondary update of an existing message; failures other than 403 are only logged."""
        if not message_id:
            return False
        try:
            await self._call(
                lambda: self.bot.edit_message_text(
                    text=text, chat_id=chat_id, message_id=message_id, reply_markup=markup
                )
            )
        except TelegramForbiddenError:
            raise
        except Exception as exc:
            if not errors.is_not_modified(exc):
                log.info("could not update message %s in chat %s: %s", message_id, chat_id, exc)
                return False
        return True

    # --- rendering ------------------------------------------------------------------

    async def _order(self, row: OutboxMessage) -> OrderView | None:
        if not row.order_id:
            return None
        try:
            return await self.core.orders.get_order(row.order_id)
        except ShopError:
            return None

    async def _order_screen(self, row: OutboxMessage) -> tuple[str, InlineKeyboardMarkup] | None:
        order = await self._order(row)
        if order is None:
            return None
        return order_screen(order, now=self.core.clock.now(), currency=self.currency)

    async def _available(self, telegram_id: int) -> int | None:
        try:
            return (await self.core.wallets.show(telegram_id)).available
        except ShopError:
            return None

    async def _deliver(self, row: OutboxMessage) -> None:
        p, chat = row.payload, row.chat_id
        service = str(p.get("service") or "")
        message_id = p.get("message_id")
        if row.kind in ("completed", "code_extra"):
            code = p.get("code")
            await self._send(
                chat,
                texts.code_message(code, p.get("text"), p.get("phone"), service),
                keyboards.code_message(str(row.order_id or p.get("order_id")), str(code) if code else None),
            )
        elif row.kind in ("expired", "failed", "cancelled", "refunded"):
            price = int(p.get("refunded") or p.get("price") or 0)
            await self._send(
                chat, texts.money_back(row.kind, price, self.currency, service, await self._available(chat))
            )
        elif row.kind == "waiting":
            screen = await self._order_screen(row)
            if screen is not None and await self._edit(chat, message_id, *screen):
                await self._send(chat, texts.number_ready(p.get("phone"), service))
            elif screen is not None:
                await self._send(chat, *screen)
            else:
                await self._send(chat, texts.number_ready(p.get("phone"), service))
            return
        elif row.kind == "wallet_adjusted":
            balance = p.get("balance_after")
            await self._send(
                chat,
                texts.wallet_adjusted(
                    str(p.get("direction") or ""),
                    int(p.get("amount") or 0),
                    self.currency,
                    int(balance) if balance is not None else None,
                ),
            )
            return
        elif row.kind == "crypto_topup":  # core.cryptopay: one per invoice (dedupe key)
            balance = p.get("balance_after")
            await self._send(
                chat,
                texts.crypto_topped_up(
                    int(p.get("amount") or 0), int(balance) if balance is not None else None, self.currency
                ),
            )
            return
        elif row.kind == "ticket":  # a support ticket's outcome (core.tickets)
            note = p.get("note")
            await self._send(
                chat,
                texts.ticket_outcome(
                    str(p.get("state") or ""),
                    service,
                    int(p.get("price") or 0),
                    self.currency,
                    note and str(note),
                ),
            )
            return
        elif row.kind == outbox.ORDER_REDRAW:
            screen = await self._order_screen(row)
            if screen is not None:
                order_message = p.get("message_id")
                await self._edit(chat, int(order_message) if order_message else None, *screen)
            return
        elif row.kind == REMINDER:
            order = await self._order(row)
            if order is not None and order.status == "waiting" and order.expires_at is not None:
                now = self.core.clock.now()
                await self._send(
                    chat,
                    texts.reminder(
                        order.service, order.phone, minutes_left(order.expires_at, now), order.expires_at
                    ),
                )
            return
        elif row.kind == broadcasts.KIND:
            # Staff's own HTML, checked against Telegram's rules when it was written.
            text = await broadcasts.text_for(self.core.db, int(p.get("broadcast_id") or 0))
            if text is None:
                raise Undeliverable("the broadcast was cancelled")
            await self._send(chat, text)
            return
        elif row.kind == "staff_alert":
            await self._send(chat, texts.staff_alert(str(p.get("text") or "")))
            return
        else:
            raise Undeliverable(f"unknown outbox kind {row.kind!r}")
        if row.kind != "code_extra" and not p.get("screen_shown"):
            screen = await self._order_screen(row)
            if screen is not None:
                await self._edit(chat, message_id, *screen)
