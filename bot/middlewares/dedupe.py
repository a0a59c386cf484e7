"""Delivery dedupe: each update id has its effect once, however often it is delivered.

``UpdateDedupe`` records ``update_id`` in ``processed_updates`` before the update is handled
and drops one that was recorded already. A ``successful_payment`` is always handled, because
crediting is idempotent on the payment's charge id and a payment must never be lost to a
crash between recording and crediting.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update

from bot.middlewares.handler import Handler
from core.clock import Clock
from core.db.engine import Database
from core.update_log import record_updates

log = logging.getLogger(__name__)


class UpdateLog:
    """Records update ids; concurrent records share one transaction (group commit).

    Under load many updates arrive together; one write transaction for all of them keeps the
    cost of deduplication flat instead of one ``BEGIN IMMEDIATE`` per update on SQLite.
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._pending: list[tuple[int, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, update_id: int) -> bool:
        """True the first time ``update_id`` is seen, False for a redelivery."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((update_id, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            ids = list(dict.fromkeys(update_id for update_id, _ in batch))
            try:
                inserted = await record_updates(self.db, ids, self.clock.now())
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for update_id, future in batch:
                # Fresh for the first waiter of a newly inserted id; a duplicate in the
                # same batch is a redelivery like any other.
                fresh = update_id in inserted
                inserted.discard(update_id)
                if not future.done():
                    future.set_result(fresh)


def _is_payment(update: Update) -> bool:
    return update.message is not None and update.message.successful_payment is not None


class UpdateDedupe(BaseMiddleware):
    def __init__(self, log_: UpdateLog) -> None:
        self.log = log_

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        try:
            fresh = await self.log.record(event.update_id)
        except Exception:
            log.exception("could not record update %s; handling it anyway", event.update_id)
            fresh = True
        if not fresh and not _is_payment(event):
            log.info("update %s was delivered again; dropped", event.update_id)
            return None
        data["redelivered"] = not fresh
        return await handler(event, data)
