"""Read-outs of an emulated bot: the call log, chats and updates as tests see them."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

from numbershop.emulator.errors import BotApiError, UnknownObject
from numbershop.emulator.records import CallContext
from numbershop.emulator.views import CallRecord, ChatSummary, ChatView, UpdateRecord
from numbershop.emulator.world import BotWorld


class CallLog(BotWorld):
    """Every Bot API call is recorded (``record_call``) in ``calls`` and in its chat."""

    def record_call(self, ctx: CallContext, error: BotApiError | None) -> CallRecord:
        record = CallRecord(
            seq=len(self.calls) + 1,
            method=ctx.method,
            chat_id=ctx.chat_id,
            started=ctx.started,
            finished=time.perf_counter(),
            ok=error is None,
            error_code=error.error_code if error else None,
            description=error.description if error else None,
        )
        self.calls.append(record)
        chat = self._chats.get(ctx.chat_id) if ctx.chat_id is not None else None
        if chat is not None:
            chat.calls.append(record)
        return record

    def chat(self, chat_id: int) -> ChatView:
        return self._view(self._control_chat(chat_id))

    def chats(self) -> list[ChatSummary]:
        return [
            ChatSummary(c.id, c.user.api(), c.user.blocked, c.version, len(c.messages))
            for c in self._chats.values()
        ]

    def version(self, chat_id: int) -> int:
        return self._control_chat(chat_id).version

    def commands(self, scope: str = "default", language_code: str = "") -> list[dict[str, Any]]:
        return list(self._commands.get((scope, language_code), []))

    def update(self, update_id: int) -> UpdateRecord:
        record = self._updates.get(update_id)
        if record is None:
            raise UnknownObject(f"no update {update_id}")
        return dataclasses.replace(record)

    @property
    def pending_update_count(self) -> int:
        return len(self._pending)

    def calls_for(self, chat_id: int) -> list[CallRecord]:
        return list(self._control_chat(chat_id).calls)

    def first_reply(self, update_id: int, methods: Iterable[str] | None = None) -> CallRecord | None:
        """The bot's first successful call in the update's chat that arrived after the
        update was created — the "reply" a latency benchmark measures."""
        record = self._updates.get(update_id)
        if record is None:
            raise UnknownObject(f"no update {update_id}")
        chat = self._chats.get(record.chat_id) if record.chat_id is not None else None
        if chat is None:
            return None
        wanted = set(methods) if methods is not None else None
        best: CallRecord | None = None
        for call in chat.calls:
            if (
                call.ok
                and call.started >= record.created_at
                and (wanted is None or call.method in wanted)
                and (best is None or call.started < best.started)
            ):
                best = call
        return best
