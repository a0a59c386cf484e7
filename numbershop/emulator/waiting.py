"""Waiting on an emulated bot: until a chat changes, the bot replies or confirms, or a
callback query is answered — each woken by a ``Signal``, never by sleeping and re-checking."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from numbershop.emulator.errors import EmulatorError, UnknownObject
from numbershop.emulator.signals import wait_on
from numbershop.emulator.views import CallbackAnswer, ChatView, UpdateRecord
from numbershop.emulator.world import BotWorld

T = TypeVar("T")


class Waiters(BotWorld):
    """Coroutines that return once something the test waits for has happened."""

    async def wait_for_change(self, chat_id: int, since: int | None = None, timeout: float = 5.0) -> ChatView:
        """Wait until the chat's version exceeds ``since`` (default: its version now).

        In-process, ``send_text(...)`` followed directly by ``await wait_for_change(chat)``
        is race-free: the bot cannot act before this coroutine first awaits. Note a
        user's own action changes the version too; use ``wait_for_reply`` for "the bot
        reacted to this update".
        """
        chat = self._control_chat(chat_id)
        base = chat.version if since is None else since
        await wait_on(
            chat.signal,
            lambda: chat.version > base,
            timeout,
            f"change in chat {chat_id} after version {base}",
        )
        return self._view(chat)

    async def wait_for_reply(self, update_id: int, timeout: float = 5.0) -> ChatView:
        """Wait until the bot has done anything in the update's chat since the update."""
        record = self._updates.get(update_id)
        if record is None:
            raise UnknownObject(f"no update {update_id}")
        if record.chat_id is None:
            raise EmulatorError(f"update {update_id} belongs to no chat")
        chat = self._chats[record.chat_id]
        seq = self._update_seq[update_id]
        await wait_on(
            chat.signal,
            lambda: chat.last_bot_seq > seq,
            timeout,
            f"bot reply to update {update_id} in chat {chat.id}",
        )
        return self._view(chat)

    async def wait_until(
        self, predicate: Callable[[], T | None], timeout: float = 5.0, what: str = "condition"
    ) -> T:
        """Wait until ``predicate()`` is truthy (re-checked on every change of this bot)."""
        return await wait_on(self._changed, predicate, timeout, what)

    async def wait_for_confirmation(self, update_id: int, timeout: float = 5.0) -> UpdateRecord:
        """Wait until the bot confirmed the update (getUpdates with a higher offset)."""
        record = self._updates.get(update_id)
        if record is None:
            raise UnknownObject(f"no update {update_id}")
        await wait_on(
            self._changed,
            lambda: record.confirmed_at is not None and all(e.update_id != update_id for e in self._pending),
            timeout,
            f"confirmation of update {update_id}",
        )
        return dataclasses.replace(record)

    async def wait_for_callback_answer(self, query_id: str, timeout: float = 5.0) -> CallbackAnswer:
        query = self._queries.get(query_id)
        if query is None:
            raise UnknownObject(f"no callback query {query_id}")
        chat = self._chats[query.chat_id]
        return await wait_on(
            chat.signal, lambda: query.answer, timeout, f"answer to callback query {query_id}"
        )
