"""Delivery dedupe: each update id has its effect once, however often it is delivered.

``UpdateDedupe`` drops an update whose id is in ``processed_updates`` and records the id once
the update has been handled (``core.update_log`` says why after, not before). A
``successful_payment`` is always handled, because crediting is idempotent on the payment's
charge id and a payment must never be lost.

A dropped tap still gets an answer in webhook mode. There a tap's answer rides on the
webhook's 200, which leaves only after the update is recorded, so a worker killed in between
(or a 500) leaves a recorded tap unanswered. Telegram redelivers only what it did not get a
2xx for, and only a 2xx's method is run, so a redelivered tap's answer never ran: the
redelivery's reply carries an empty one to stop the spinner. Had the tap been answered by a
request after all (an early "working on it"), Telegram refuses the second answer and
reports nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update

from bot.middlewares.handler import Handler
from bot.webhook_reply import WebhookReply
from core.clock import Clock
from core.db.engine import Database
from core.update_log import handled_among, record_updates

log = logging.getLogger(__name__)


class _Batch:
    """Concurrent calls share one database round trip (group commit for the writes).

    Under load many updates arrive together; one statement for all of them keeps the cost of
    deduplication flat instead of one ``BEGIN IMMEDIATE`` per update on SQLite."""

    def __init__(self, run: Callable[[list[int]], Awaitable[set[int]]], *, first_only: bool = False) -> None:
        self._run = run
        self._first_only = first_only  # an id found is True for its first caller only
        self._pending: list[tuple[int, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, update_id: int) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((update_id, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                found = await self._run(list(dict.fromkeys(update_id for update_id, _ in batch)))
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for update_id, future in batch:
                hit = update_id in found
                if hit and self._first_only:
                    found.discard(update_id)
                if not future.done():
                    future.set_result(hit)


class UpdateLog:
    """Which update ids were handled; reads and writes each batched across concurrent updates."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        # One kept connection each: a read and a write batch may be in flight at once.
        reads, writes = db.kept_connection(), db.kept_connection()
        self._handled = _Batch(lambda ids: handled_among(reads, ids))
        self._record = _Batch(lambda ids: record_updates(writes, ids, clock.now()), first_only=True)

    async def handled(self, update_id: int) -> bool:
        """True if ``update_id`` was handled before (a redelivery)."""
        return await self._handled(update_id)

    async def record(self, update_id: int) -> bool:
        """Mark ``update_id`` handled; True if this call recorded it (False: it already was)."""
        return await self._record(update_id)


def _is_payment(update: Update) -> bool:
    return update.message is not None and update.message.successful_payment is not None


class UpdateDedupe(BaseMiddleware):
    def __init__(self, log_: UpdateLog) -> None:
        self.log = log_

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        try:
            seen = await self.log.handled(event.update_id)
        except Exception:
            log.exception("could not read the update log for %s; handling it anyway", event.update_id)
            seen = False
        if seen and not _is_payment(event):
            log.info("update %s was delivered again; dropped", event.update_id)
            slot = data.get("webhook_reply")
            if event.callback_query is not None and isinstance(slot, WebhookReply):
                slot.answer(event.callback_query.id)
            return None
        data["redelivered"] = seen
        try:
            result = await handler(event, data)
        except asyncio.CancelledError:
            raise  # stopped mid-update: left unrecorded, so its redelivery is handled
        except Exception:
            await self._record(event.update_id)  # a crash in a handler must not loop forever
            raise
        await self._record(event.update_id)
        return result

    async def _record(self, update_id: int) -> None:
        try:
            await self.log.record(update_id)
        except Exception:  # a redelivery would be handled again: idempotent, so only logged
            log.exception("could not record update %s as handled", update_id)
