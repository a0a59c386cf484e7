"""One bot's world: the state every side of an ``EmulatedBot`` shares, and how it looks.

``BotWorld`` holds the chats, the update queue, queries, charges, faults and the call log,
plus the helpers that turn records into Bot API JSON (``_message_api``) and into the frozen
views tests read (``_view``). The sides that act on it are mixins in ``bot_api``,
``user_side``, ``faults``, ``calllog`` and ``waiting``; ``state.EmulatedBot`` combines them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from numbershop.emulator.errors import EmulatorError, UnknownObject
from numbershop.emulator.records import (
    _CallbackQuery,
    _Charge,
    _Chat,
    _Fault,
    _Message,
    _Pending,
    _PreCheckout,
    _User,
)
from numbershop.emulator.signals import Signal
from numbershop.emulator.views import (
    Button,
    CallRecord,
    ChatView,
    InvoiceView,
    MessageView,
    UpdateRecord,
)

#: What Telegram sends when a bot never said which updates it wants.
DEFAULT_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "callback_query",
        "pre_checkout_query",
        "my_chat_member",
        "shipping_query",
        "inline_query",
        "chosen_inline_result",
        "channel_post",
        "edited_channel_post",
        "poll",
        "poll_answer",
        "chat_join_request",
    }
)


class BotWorld:
    """The shared state of one emulated bot. See ``numbershop.emulator.state``."""

    def __init__(
        self,
        token: str,
        *,
        username: str | None = None,
        first_name: str | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.id = int(token.split(":", 1)[0])
        self.username = username or f"emulated_{self.id}_bot"
        self.first_name = first_name or "Emulated bot"
        self._now = now
        self._chats: dict[int, _Chat] = {}
        self._updates: dict[int, UpdateRecord] = {}
        self._update_seq: dict[int, int] = {}
        self._pending: deque[_Pending] = deque()
        self._next_update_id = 1
        self._allowed: frozenset[str] = DEFAULT_UPDATE_TYPES
        self._poller: object | None = None
        self._webhook: Any = None  # webhook._Webhook while a webhook is set
        self._tls_routes: dict[str, str] = {}  # public webhook URL -> local listener (a TLS proxy)
        self._polling = False
        self._updates_signal = Signal()
        self._changed = Signal()
        self._seq = 0
        self._counter = 0
        self._queries: dict[str, _CallbackQuery] = {}
        self._pre_checkouts: dict[str, _PreCheckout] = {}
        self._charges: dict[str, _Charge] = {}
        self._faults: list[_Fault] = []
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._closed = False
        self.calls: list[CallRecord] = []
        """Every Bot API call in arrival order of completion; read, don't mutate."""

    # ------------------------------------------------------------------ helpers

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _unique(self) -> int:
        self._counter += 1
        return self._counter

    def _date(self) -> int:
        return int(self._now())

    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": True, "first_name": self.first_name, "username": self.username}

    @staticmethod
    def _chat_api(chat: _Chat) -> dict[str, Any]:
        api: dict[str, Any] = {"id": chat.id, "type": "private", "first_name": chat.user.first_name}
        if chat.user.username:
            api["username"] = chat.user.username
        return api

    def _message_api(self, chat: _Chat, msg: _Message) -> dict[str, Any]:
        api: dict[str, Any] = {
            "message_id": msg.message_id,
            "from": self._bot_user() if msg.sender == "bot" else chat.user.api(),
            "chat": self._chat_api(chat),
            "date": msg.date,
        }
        if msg.text is not None:
            api["text"] = msg.text
            if msg.entities:
                api["entities"] = [dict(e) for e in msg.entities]
        if msg.invoice is not None:
            inv = msg.invoice
            api["invoice"] = {
                "title": inv.title,
                "description": inv.description,
                "start_parameter": inv.start_parameter,
                "currency": inv.currency,
                "total_amount": inv.total_amount,
            }
        if msg.successful_payment is not None:
            api["successful_payment"] = dict(msg.successful_payment)
        if msg.markup is not None:
            api["reply_markup"] = msg.markup
        if msg.edit_date is not None:
            api["edit_date"] = msg.edit_date
        return api

    def _touch(self, chat: _Chat, *, by_bot: bool) -> None:
        chat.version += 1
        if by_bot:
            chat.last_bot_seq = self._next_seq()
        chat.signal.notify()
        self._changed.notify()

    def _ensure_user(
        self,
        user_id: int,
        first_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
    ) -> _Chat:
        if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
            raise EmulatorError(f"user ids are positive integers, got {user_id!r}")
        chat = self._chats.get(user_id)
        if chat is None:
            user = _User(user_id, first_name or f"User {user_id}", username, language_code)
            chat = self._chats[user_id] = _Chat(user)
        else:
            if first_name:
                chat.user.first_name = first_name
            if username:
                chat.user.username = username
            if language_code:
                chat.user.language_code = language_code
        return chat

    def _control_chat(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise UnknownObject(f"chat {chat_id} does not exist (a user must write first)")
        return chat

    def _push_update(self, kind: str, chat_id: int | None, body: dict[str, Any]) -> UpdateRecord:
        update_id = self._next_update_id
        self._next_update_id += 1
        record = UpdateRecord(
            update_id, kind, chat_id, {"update_id": update_id, kind: body}, created_at=time.perf_counter()
        )
        self._updates[update_id] = record
        self._update_seq[update_id] = self._next_seq()
        if kind in self._allowed:
            self._pending.append(_Pending(update_id))
            self._updates_signal.notify()
        else:
            record.dropped = True
        self._changed.notify()
        return record

    def _view(self, chat: _Chat) -> ChatView:
        messages = []
        for m in chat.messages.values():
            keyboard = tuple(
                tuple(
                    Button(
                        b["text"],
                        b.get("callback_data"),
                        b.get("url"),
                        bool(b.get("pay")),
                        (b.get("copy_text") or {}).get("text"),
                    )
                    for b in row
                )
                for row in (m.markup or {}).get("inline_keyboard", [])
            )
            inv = m.invoice
            messages.append(
                MessageView(
                    message_id=m.message_id,
                    sender=m.sender,
                    date=m.date,
                    text=m.text,
                    entities=tuple(dict(e) for e in m.entities),
                    parse_mode=m.parse_mode,
                    source=m.source,
                    keyboard=keyboard,
                    invoice=InvoiceView(
                        inv.title,
                        inv.description,
                        inv.currency,
                        inv.total_amount,
                        inv.payload,
                        inv.paid,
                        inv.charge_id,
                    )
                    if inv
                    else None,
                    successful_payment=dict(m.successful_payment) if m.successful_payment else None,
                    edited=m.edit_date is not None,
                )
            )
        reply_keyboard = tuple(
            tuple(b["text"] for b in row) for row in (chat.reply_keyboard or {}).get("keyboard", [])
        )
        return ChatView(
            chat.id,
            chat.user.api(),
            chat.user.blocked,
            chat.version,
            tuple(messages),
            reply_keyboard,
            tuple(chat.answers),
        )
