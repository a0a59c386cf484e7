"""The in-memory Bot API: bots, their users' private chats, updates, queries and payments.

One ``Emulator`` holds any number of bots (the benchmark runs the shop bot and an echo bot
side by side), each an ``EmulatedBot`` keyed by its id — the number before the colon of its
token. A bot has two faces:

- the *bot side* (``api_*`` methods, reached over HTTP through ``server``): what a bot can
  do, validated as Telegram validates it, refusing with ``BotApiError``;
- the *user side* (the control API: ``send_text``, ``press_button``, ``pay_invoice``, …):
  what users do, plus test knobs (faults, blocking, redelivery) and read-outs (chat views,
  callback answers, the call log).

Every mutation is synchronous and happens on the event loop, so a control call and the state
it produces are atomic with respect to the bot. Waiting is done on ``Signal``s that are
notified on each change — never by sleeping and re-checking.

Updates follow getUpdates semantics: an update stays queued until getUpdates is called with
an ``offset`` above its id. ``redeliver`` re-queues a past update with its original id; such
an update is always handed out in a batch of its own, so the client's next offset (its id +
1) confirms exactly it and nothing newer.

Known simplifications: private chats only (no groups, channels, inline mode or webhooks);
Markdown parse modes are stored as sent, without entities or validation; callback queries
never expire.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from numbershop.emulator import errors as E
from numbershop.emulator.errors import BotApiError, EmulatorError, UnknownObject, bad_request
from numbershop.emulator.formatting import MAX_TEXT_UTF16, command_entities, render, utf16_len
from numbershop.emulator.keyboards import KEEP, REMOVE, normalize_inline, parse_reply_markup
from numbershop.emulator.views import (
    Button,
    CallbackAnswer,
    CallRecord,
    ChatSummary,
    ChatView,
    InvoiceView,
    MessageView,
    Payment,
    Press,
    UpdateRecord,
)

T = TypeVar("T")

#: What Telegram sends when a bot never said which updates it wants.
DEFAULT_UPDATE_TYPES = frozenset(
    {"message", "edited_message", "callback_query", "pre_checkout_query", "my_chat_member",
     "shipping_query", "inline_query", "chosen_inline_result", "channel_post",
     "edited_channel_post", "poll", "poll_answer", "chat_join_request"}
)
MAX_POLL_TIMEOUT = 50.0


class Signal:
    """Wakes every coroutine waiting for "something changed".

    State changes are synchronous, so notifying must be too (``asyncio.Condition`` would
    need its lock, i.e. an await, inside every mutation). A waiter checks its predicate and
    takes the current event in one synchronous step, so no notification can slip between.
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        event = self._event
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass


async def wait_on(
    signal: Signal, predicate: Callable[[], T | None], timeout: float, what: str
) -> T:
    """The predicate's first truthy result, re-checked after each notification."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if result:
            return result
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"emulator: no {what} within {timeout:g}s")
        await signal.wait(remaining)


@dataclass
class _User:
    id: int
    first_name: str
    username: str | None = None
    language_code: str | None = None
    blocked: bool = False

    def api(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user


@dataclass
class _Invoice:
    title: str
    description: str
    currency: str
    total_amount: int
    payload: str
    start_parameter: str
    paid: bool = False
    charge_id: str | None = None
    in_checkout: bool = False


@dataclass
class _Message:
    message_id: int
    sender: Literal["bot", "user"]
    date: int
    text: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    parse_mode: str | None = None
    source: str | None = None
    markup: dict[str, Any] | None = None
    invoice: _Invoice | None = None
    successful_payment: dict[str, Any] | None = None
    edit_date: int | None = None


@dataclass
class _CallbackQuery:
    id: str
    chat_id: int
    message_id: int
    data: str
    answer: CallbackAnswer | None = None


@dataclass
class _PreCheckout:
    id: str
    chat_id: int
    invoice_message_id: int
    answered: bool = False
    ok: bool = False
    error_message: str | None = None
    expired: bool = False


@dataclass
class _Charge:
    chat_id: int
    successful_payment: dict[str, Any]
    refunded: bool = False


@dataclass
class _Fault:
    method: str | None
    chat_id: int | None
    remaining: int
    error_code: int
    description: str
    retry_after: int | None

    def matches(self, method: str, chat_id: int | None) -> bool:
        if self.method is None:
            if method == "getUpdates":
                return False  # a fault for "any method" must not stall polling
        elif self.method != method.lower():
            return False
        return self.chat_id is None or self.chat_id == chat_id


@dataclass
class _Pending:
    update_id: int
    redelivery: bool = False
    delivered: bool = False


class _Chat:
    __slots__ = ("id", "user", "messages", "next_message_id", "version", "last_bot_seq",
                 "reply_keyboard", "answers", "calls", "signal")

    def __init__(self, user: _User) -> None:
        self.id = user.id  # a private chat's id is its user's id
        self.user = user
        self.messages: dict[int, _Message] = {}
        self.next_message_id = 1
        self.version = 0
        self.last_bot_seq = 0
        self.reply_keyboard: dict[str, Any] | None = None
        self.answers: list[CallbackAnswer] = []
        self.calls: list[CallRecord] = []
        self.signal = Signal()

    def new_message_id(self) -> int:
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id


@dataclass
class CallContext:
    """Filled in by a method while it runs; becomes the call's ``CallRecord``."""

    method: str
    started: float
    chat_id: int | None = None


class EmulatedBot:
    """One bot's world on the emulator. See the module docstring for the two sides."""

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
        return {"id": self.id, "is_bot": True, "first_name": self.first_name,
                "username": self.username}

    @staticmethod
    def _chat_api(chat: _Chat) -> dict[str, Any]:
        api: dict[str, Any] = {"id": chat.id, "type": "private",
                               "first_name": chat.user.first_name}
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
            api["invoice"] = {"title": inv.title, "description": inv.description,
                              "start_parameter": inv.start_parameter,
                              "currency": inv.currency, "total_amount": inv.total_amount}
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
        self, user_id: int, first_name: str | None = None, username: str | None = None,
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
        record = UpdateRecord(update_id, kind, chat_id, {"update_id": update_id, kind: body},
                              created_at=time.perf_counter())
        self._updates[update_id] = record
        self._update_seq[update_id] = self._next_seq()
        if kind in self._allowed:
            self._pending.append(_Pending(update_id))
            self._updates_signal.notify()
        else:
            record.dropped = True
        self._changed.notify()
        return record

    # ---------------------------------------------------------------- bot side

    def api_get_me(self) -> dict[str, Any]:
        return {**self._bot_user(), "can_join_groups": True,
                "can_read_all_group_messages": False, "supports_inline_queries": False,
                "can_connect_to_business": False, "has_main_web_app": False}

    async def api_get_updates(
        self, offset: int | None, limit: int, timeout: float,
        allowed_updates: list[str] | None,
    ) -> list[dict[str, Any]]:
        if allowed_updates is not None:
            self._allowed = frozenset(allowed_updates) if allowed_updates else DEFAULT_UPDATE_TYPES
        if offset is not None:
            self._confirm(offset)
        limit = min(max(limit, 1), 100)
        me = object()
        self._poller = me  # the newest request wins; an older one still waiting gets 409
        self._updates_signal.notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(timeout, 0.0), MAX_POLL_TIMEOUT)
        try:
            while True:
                if self._poller is not me:
                    raise BotApiError(409, E.GETUPDATES_CONFLICT)
                batch = self._take(limit)
                remaining = deadline - loop.time()
                if batch or self._closed or remaining <= 0:
                    return batch
                if not self._polling:
                    self._polling = True
                    self._changed.notify()
                await self._updates_signal.wait(remaining)
        finally:
            if self._poller is me:
                self._poller = None
                if self._polling:
                    self._polling = False
                    self._changed.notify()

    @property
    def is_polling(self) -> bool:
        """A getUpdates long poll is waiting right now (the bot is idle and listening)."""
        return self._polling

    def _confirm(self, offset: int) -> None:
        now = time.perf_counter()
        if offset < 0:
            while len(self._pending) > -offset:
                self._updates[self._pending.popleft().update_id].confirmed_at = now
            return
        kept: deque[_Pending] = deque()
        for entry in self._pending:
            if entry.update_id < offset and (entry.delivered or not entry.redelivery):
                self._updates[entry.update_id].confirmed_at = now
            else:
                kept.append(entry)
        if len(kept) != len(self._pending):
            self._pending = kept
            self._changed.notify()

    def _take(self, limit: int) -> list[dict[str, Any]]:
        batch: list[_Pending] = []
        for entry in self._pending:
            if entry.redelivery:
                if not batch:
                    batch.append(entry)
                break
            batch.append(entry)
            if len(batch) >= limit:
                break
        now = time.perf_counter()
        out = []
        for entry in batch:
            entry.delivered = True
            record = self._updates[entry.update_id]
            record.deliveries += 1
            if record.delivered_at is None:
                record.delivered_at = now
            out.append(record.payload)
        return out

    def api_delete_webhook(self, drop_pending_updates: bool) -> bool:
        if drop_pending_updates:
            now = time.perf_counter()
            for entry in self._pending:
                self._updates[entry.update_id].confirmed_at = now
            self._pending.clear()
        return True

    def api_webhook_info(self) -> dict[str, Any]:
        return {"url": "", "has_custom_certificate": False,
                "pending_update_count": len(self._pending)}

    def _bot_chat(self, chat_id: int | None) -> _Chat:
        chat = self._chats.get(chat_id) if chat_id is not None else None
        if chat is None:
            raise BotApiError(400, E.CHAT_NOT_FOUND)
        if chat.user.blocked:
            raise BotApiError(403, E.BOT_BLOCKED)
        return chat

    def _render_text(
        self, text: str | None, parse_mode: str | None, entities: list[dict[str, Any]] | None
    ) -> tuple[str, list[dict[str, Any]]]:
        if not text:
            raise BotApiError(400, E.TEXT_EMPTY)
        plain, ents = render(text, parse_mode, entities)
        if not plain:
            raise BotApiError(400, E.TEXT_EMPTY)
        if utf16_len(plain) > MAX_TEXT_UTF16:
            raise BotApiError(400, E.TEXT_TOO_LONG)
        return plain, ents

    def _apply_reply_keyboard(self, chat: _Chat, change: Any) -> None:
        if change is REMOVE:
            chat.reply_keyboard = None
        elif change is not KEEP:
            chat.reply_keyboard = change

    def api_send_message(
        self, chat_id: int | None, text: str | None, *, parse_mode: str | None = None,
        entities: list[dict[str, Any]] | None = None, reply_markup: Any = None,
    ) -> tuple[_Chat, dict[str, Any]]:
        chat = self._bot_chat(chat_id)
        plain, ents = self._render_text(text, parse_mode, entities)
        inline, keyboard_change = parse_reply_markup(reply_markup)
        msg = _Message(chat.new_message_id(), "bot", self._date(), text=plain, entities=ents,
                       parse_mode=parse_mode, source=text, markup=inline)
        chat.messages[msg.message_id] = msg
        self._apply_reply_keyboard(chat, keyboard_change)
        self._touch(chat, by_bot=True)
        return self._message_api(chat, msg)

    def _editable(self, chat_id: int | None, message_id: int | None) -> tuple[_Chat, _Message]:
        if message_id is None:
            raise bad_request("message identifier is not specified")
        chat = self._bot_chat(chat_id)
        msg = chat.messages.get(message_id)
        if msg is None:
            raise BotApiError(400, E.MESSAGE_TO_EDIT_NOT_FOUND)
        if msg.sender != "bot":
            raise BotApiError(400, E.MESSAGE_CANT_BE_EDITED)
        return chat, msg

    def api_edit_text(
        self, chat_id: int | None, message_id: int | None, text: str | None, *,
        parse_mode: str | None = None, entities: list[dict[str, Any]] | None = None,
        reply_markup: Any = None,
    ) -> dict[str, Any]:
        chat, msg = self._editable(chat_id, message_id)
        if msg.text is None:
            raise BotApiError(400, E.NO_TEXT_TO_EDIT)
        plain, ents = self._render_text(text, parse_mode, entities)
        markup = normalize_inline(reply_markup)  # no markup given removes the keyboard
        if plain == msg.text and ents == msg.entities and markup == msg.markup:
            raise BotApiError(400, E.NOT_MODIFIED)
        msg.text, msg.entities, msg.parse_mode, msg.source = plain, ents, parse_mode, text
        msg.markup = markup
        msg.edit_date = self._date()
        self._touch(chat, by_bot=True)
        return self._message_api(chat, msg)

    def api_edit_markup(
        self, chat_id: int | None, message_id: int | None, reply_markup: Any
    ) -> dict[str, Any]:
        chat, msg = self._editable(chat_id, message_id)
        markup = normalize_inline(reply_markup)
        if markup == msg.markup:
            raise BotApiError(400, E.NOT_MODIFIED)
        msg.markup = markup
        msg.edit_date = self._date()
        self._touch(chat, by_bot=True)
        return self._message_api(chat, msg)

    def api_delete_message(self, chat_id: int | None, message_id: int | None) -> bool:
        chat = self._chats.get(chat_id) if chat_id is not None else None
        if chat is None:
            raise BotApiError(400, E.CHAT_NOT_FOUND)
        if message_id is None or chat.messages.pop(message_id, None) is None:
            raise BotApiError(400, E.MESSAGE_TO_DELETE_NOT_FOUND)
        self._touch(chat, by_bot=True)
        return True

    def api_answer_callback(
        self, query_id: str | None, *, text: str | None = None, show_alert: bool = False,
        url: str | None = None,
    ) -> int:
        """Records the answer; returns the chat id the query came from."""
        query = self._queries.get(query_id or "")
        if query is None or query.answer is not None:
            raise BotApiError(400, E.QUERY_INVALID)
        query.answer = CallbackAnswer(query.id, query.chat_id, query.message_id, query.data,
                                      text, show_alert, url)
        chat = self._chats[query.chat_id]
        chat.answers.append(query.answer)
        self._touch(chat, by_bot=True)
        return chat.id

    def api_send_invoice(
        self, chat_id: int | None, *, title: str | None, description: str | None,
        payload: str | None, currency: str | None, prices: Any, provider_token: str | None,
        start_parameter: str | None = None, reply_markup: Any = None,
    ) -> dict[str, Any]:
        chat = self._bot_chat(chat_id)
        if not title or len(title) > 32:
            raise bad_request("INVOICE_TITLE_INVALID" if title else "title is empty")
        if not description or len(description) > 255:
            raise bad_request("INVOICE_DESCRIPTION_INVALID" if description else "description is empty")
        if not payload or len(payload.encode()) > 128:
            raise bad_request("INVOICE_PAYLOAD_INVALID" if payload else "payload is empty")
        if not currency:
            raise bad_request("currency is empty")
        if not isinstance(prices, list) or not prices:
            raise bad_request("prices must be non-empty")
        total = 0
        for price in prices:
            amount = price.get("amount") if isinstance(price, dict) else None
            if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
                raise bad_request("CURRENCY_TOTAL_AMOUNT_INVALID")
            total += amount
        if currency == "XTR":
            if provider_token:
                raise bad_request("provider_token must be empty for payments in Telegram Stars")
            if len(prices) != 1:
                raise bad_request("STARS_INVOICE_INVALID")
        inline = normalize_inline(reply_markup) if isinstance(reply_markup, dict) else None
        if inline is None:
            label = f"Pay ⭐️{total}" if currency == "XTR" else f"Pay {total} {currency}"
            inline = {"inline_keyboard": [[{"text": label, "pay": True}]]}
        elif not inline["inline_keyboard"][0][0].get("pay"):
            raise bad_request("the first button of an invoice must be a Pay button")
        invoice = _Invoice(title, description, currency, total, payload, start_parameter or "")
        msg = _Message(chat.new_message_id(), "bot", self._date(), markup=inline, invoice=invoice)
        chat.messages[msg.message_id] = msg
        self._touch(chat, by_bot=True)
        return self._message_api(chat, msg)

    def api_answer_pre_checkout(
        self, query_id: str | None, ok: bool, error_message: str | None
    ) -> int:
        query = self._pre_checkouts.get(query_id or "")
        if query is None or query.answered or query.expired:
            raise BotApiError(400, E.QUERY_INVALID)
        if not ok and not error_message:
            raise bad_request("error_message must be non-empty when ok is false")
        query.answered, query.ok, query.error_message = True, ok, error_message
        self._touch(self._chats[query.chat_id], by_bot=True)
        return query.chat_id

    def api_refund_star_payment(self, user_id: int | None, charge_id: str | None) -> bool:
        charge = self._charges.get(charge_id or "")
        if charge is None or charge.chat_id != user_id:
            raise bad_request("CHARGE_NOT_FOUND")
        if charge.refunded:
            raise bad_request("CHARGE_ALREADY_REFUNDED")
        charge.refunded = True
        self._touch(self._chats[charge.chat_id], by_bot=True)
        return True

    def api_get_chat(self, chat_id: int | None) -> dict[str, Any]:
        chat = self._chats.get(chat_id) if chat_id is not None else None
        if chat is None:
            raise BotApiError(400, E.CHAT_NOT_FOUND)
        gifts = {k: True for k in ("unlimited_gifts", "limited_gifts", "unique_gifts",
                                   "premium_subscription", "gifts_from_channels")}
        return {**self._chat_api(chat), "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": gifts}

    def api_chat_action(self, chat_id: int | None) -> bool:
        self._bot_chat(chat_id)  # unknown chat → 400, blocked → 403, like Telegram
        return True

    def api_set_commands(
        self, commands: Any, scope: Any, language_code: str | None
    ) -> bool:
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("commands must be a list of at most 100 BotCommand")
        clean = []
        for c in commands:
            name = c.get("command") if isinstance(c, dict) else None
            desc = c.get("description") if isinstance(c, dict) else None
            if (not isinstance(name, str) or not 1 <= len(name) <= 32
                    or not all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in name)
                    or name != name.lower()):
                raise bad_request("BOT_COMMAND_INVALID")
            if not isinstance(desc, str) or not 1 <= len(desc) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": name, "description": desc})
        self._commands[self._commands_key(scope, language_code)] = clean
        return True

    def api_get_commands(self, scope: Any, language_code: str | None) -> list[dict[str, Any]]:
        return list(self._commands.get(self._commands_key(scope, language_code), []))

    def api_delete_commands(self, scope: Any, language_code: str | None) -> bool:
        self._commands.pop(self._commands_key(scope, language_code), None)
        return True

    @staticmethod
    def _commands_key(scope: Any, language_code: str | None) -> tuple[str, str]:
        kind = scope.get("type", "default") if isinstance(scope, dict) else "default"
        return kind, language_code or ""

    # ------------------------------------------------------------ call log and faults

    def take_fault(self, method: str, chat_id: int | None) -> BotApiError | None:
        """The injected error for this call, if one is armed for it (consumes one use)."""
        for fault in self._faults:
            if fault.matches(method, chat_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return BotApiError(fault.error_code, fault.description,
                                   retry_after=fault.retry_after)
        return None

    def record_call(self, ctx: CallContext, error: BotApiError | None) -> CallRecord:
        record = CallRecord(
            seq=len(self.calls) + 1, method=ctx.method, chat_id=ctx.chat_id,
            started=ctx.started, finished=time.perf_counter(), ok=error is None,
            error_code=error.error_code if error else None,
            description=error.description if error else None,
        )
        self.calls.append(record)
        chat = self._chats.get(ctx.chat_id) if ctx.chat_id is not None else None
        if chat is not None:
            chat.calls.append(record)
        return record

    def fail_next(
        self, method: str | None = None, *, chat_id: int | None = None, count: int = 1,
        error_code: int = 429, retry_after: int | None = None, description: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching calls with an error instead of running them.

        ``method=None`` matches every method except getUpdates; ``chat_id=None`` every chat.
        A 429 gets ``parameters.retry_after`` (default 1 s) and Telegram's description.
        """
        if count < 1:
            raise EmulatorError("count must be at least 1")
        if error_code == 429:
            retry_after = 1 if retry_after is None else retry_after
            description = description or f"Too Many Requests: retry after {retry_after}"
        elif description is None:
            description = {400: "Bad Request: injected fault", 403: E.BOT_BLOCKED,
                           500: "Internal Server Error"}.get(error_code, "Injected fault")
        self._faults.append(_Fault(method.lower() if method else None, chat_id, count,
                                   error_code, description, retry_after))

    def clear_faults(self) -> None:
        self._faults.clear()

    # --------------------------------------------------------------- user side

    def add_user(
        self, user_id: int, *, first_name: str | None = None, username: str | None = None,
        language_code: str | None = None,
    ) -> ChatView:
        """Make a user (and their private chat) exist without sending anything."""
        return self._view(self._ensure_user(user_id, first_name, username, language_code))

    def send_text(
        self, user_id: int, text: str, *, first_name: str | None = None,
        username: str | None = None, language_code: str | None = None,
    ) -> int:
        """The user writes ``text`` to the bot; returns the update id."""
        if not text or not text.strip():
            raise EmulatorError("a user cannot send an empty message")
        chat = self._ensure_user(user_id, first_name, username, language_code)
        if chat.user.blocked:
            raise EmulatorError(f"user {user_id} has blocked the bot; unblock first")
        msg = _Message(chat.new_message_id(), "user", self._date(), text=text,
                       entities=command_entities(text))
        chat.messages[msg.message_id] = msg
        self._touch(chat, by_bot=False)
        return self._push_update("message", chat.id, self._message_api(chat, msg)).update_id

    def press_button(
        self, chat_id: int, message_id: int | None = None, *, data: str | None = None,
        text: str | None = None, forge: bool = False,
    ) -> Press:
        """The user taps an inline button, found by its ``text`` and/or callback ``data``.

        Without ``message_id`` the newest bot message with such a button is used.
        ``forge=True`` sends ``data`` even if no button carries it — what a modified
        client can do, and what the bot must refuse gracefully.
        """
        if data is None and text is None:
            raise EmulatorError("press_button needs data= or text=")
        if forge and data is None:
            raise EmulatorError("a forged press needs data=")
        chat = self._control_chat(chat_id)
        if chat.user.blocked:
            raise EmulatorError(f"user {chat_id} has blocked the bot; unblock first")

        def find(msg: _Message) -> dict[str, Any] | None:
            rows = msg.markup["inline_keyboard"] if msg.markup else []
            for row in rows:
                for button in row:
                    if ((text is None or button["text"] == text)
                            and (data is None or button.get("callback_data") == data)):
                        return button
            return None

        if message_id is not None:
            msg = chat.messages.get(message_id)
            if msg is None:
                raise UnknownObject(f"chat {chat_id} has no message {message_id}")
            button = find(msg)
        else:
            button, msg = None, None
            for candidate in reversed(chat.messages.values()):
                if candidate.sender == "bot" and (found := find(candidate)) is not None:
                    button, msg = found, candidate
                    break
            if msg is None:
                if not forge:
                    raise EmulatorError(
                        f"no message in chat {chat_id} has a button "
                        f"{'text=' + repr(text) if text is not None else ''}"
                        f"{' data=' + repr(data) if data is not None else ''}"
                    )
                msg = next((m for m in reversed(chat.messages.values()) if m.sender == "bot"), None)
                if msg is None:
                    raise EmulatorError(f"chat {chat_id} has no bot message to press on")
        if forge:
            pressed = data
        else:
            if button is None:
                texts = [b["text"] for row in (msg.markup or {}).get("inline_keyboard", [])
                         for b in row]
                raise EmulatorError(f"message {msg.message_id} has no such button; it has {texts}")
            if "callback_data" not in button:
                kind = "a Pay button (use pay_invoice)" if button.get("pay") else "not a callback button"
                raise EmulatorError(f"button {button['text']!r} is {kind}")
            pressed = button["callback_data"]
        assert pressed is not None
        query_id = f"{self.id}{self._unique():010d}"
        self._queries[query_id] = _CallbackQuery(query_id, chat.id, msg.message_id, pressed)
        body = {"id": query_id, "from": chat.user.api(),
                "message": self._message_api(chat, msg),
                "chat_instance": str(abs(hash((self.id, chat.id)))), "data": pressed}
        record = self._push_update("callback_query", chat.id, body)
        return Press(record.update_id, query_id, chat.id, msg.message_id, pressed)

    def callback_answer(self, query_id: str) -> CallbackAnswer | None:
        query = self._queries.get(query_id)
        if query is None:
            raise UnknownObject(f"no callback query {query_id}")
        return query.answer

    async def wait_for_callback_answer(self, query_id: str, timeout: float = 5.0) -> CallbackAnswer:
        query = self._queries.get(query_id)
        if query is None:
            raise UnknownObject(f"no callback query {query_id}")
        chat = self._chats[query.chat_id]
        return await wait_on(chat.signal, lambda: query.answer, timeout,
                             f"answer to callback query {query_id}")

    async def pay_invoice(
        self, chat_id: int, message_id: int | None = None, *, timeout: float = 10.0
    ) -> Payment:
        """The user pays an invoice: pre_checkout_query, then (if the bot says ok) the
        successful_payment message. Without ``message_id`` the newest unpaid invoice."""
        chat = self._control_chat(chat_id)
        if chat.user.blocked:
            raise EmulatorError(f"user {chat_id} has blocked the bot; unblock first")
        if message_id is None:
            msg = next((m for m in reversed(chat.messages.values())
                        if m.invoice is not None and not m.invoice.paid), None)
            if msg is None:
                raise EmulatorError(f"chat {chat_id} has no unpaid invoice")
        else:
            msg = chat.messages.get(message_id)
            if msg is None or msg.invoice is None:
                raise UnknownObject(f"chat {chat_id} has no invoice message {message_id}")
        invoice = msg.invoice
        assert invoice is not None
        if invoice.paid:
            raise EmulatorError(f"invoice message {msg.message_id} is already paid")
        if invoice.in_checkout:
            raise EmulatorError(f"invoice message {msg.message_id} is already in checkout")
        invoice.in_checkout = True
        try:
            query = _PreCheckout(f"{self.id}{self._unique():010d}", chat.id, msg.message_id)
            self._pre_checkouts[query.id] = query
            update = self._push_update("pre_checkout_query", chat.id, {
                "id": query.id, "from": chat.user.api(), "currency": invoice.currency,
                "total_amount": invoice.total_amount, "invoice_payload": invoice.payload,
            })
            base = dict(chat_id=chat.id, invoice_message_id=msg.message_id,
                        pre_checkout_query_id=query.id, pre_checkout_update_id=update.update_id,
                        currency=invoice.currency, total_amount=invoice.total_amount,
                        payload=invoice.payload)
            try:
                await wait_on(chat.signal, lambda: query.answered, timeout,
                              "answer to pre_checkout_query")
            except TimeoutError:
                query.expired = True
                return Payment(status="timeout", **base)
            if not query.ok:
                return Payment(status="declined", error_message=query.error_message, **base)
            charge_id = f"stx{self.id}x{self._unique():08d}{secrets.token_hex(6)}"
            invoice.paid, invoice.charge_id = True, charge_id
            paid = {"currency": invoice.currency, "total_amount": invoice.total_amount,
                    "invoice_payload": invoice.payload,
                    "telegram_payment_charge_id": charge_id, "provider_payment_charge_id": ""}
            self._charges[charge_id] = _Charge(chat.id, paid)
            update_id, pay_msg_id = self._user_payment_message(chat, paid)
            return Payment(status="paid", charge_id=charge_id, update_id=update_id,
                           message_id=pay_msg_id, **base)
        finally:
            invoice.in_checkout = False

    def _user_payment_message(self, chat: _Chat, paid: dict[str, Any]) -> tuple[int, int]:
        msg = _Message(chat.new_message_id(), "user", self._date(),
                       successful_payment=dict(paid))
        chat.messages[msg.message_id] = msg
        self._touch(chat, by_bot=False)
        return self._push_update("message", chat.id, self._message_api(chat, msg)).update_id, msg.message_id

    def resend_payment(self, charge_id: str) -> int:
        """Report a past payment again as a *new* message update (new update id, same
        ``telegram_payment_charge_id``): the bot must credit it once."""
        charge = self._charges.get(charge_id)
        if charge is None:
            raise UnknownObject(f"no payment with charge id {charge_id}")
        update_id, _ = self._user_payment_message(self._chats[charge.chat_id],
                                                  charge.successful_payment)
        return update_id

    def redeliver(self, update_id: int) -> int:
        """Queue a past update again, same ``update_id`` and content (a retried delivery)."""
        record = self._updates.get(update_id)
        if record is None:
            raise UnknownObject(f"no update {update_id}")
        if any(e.update_id == update_id for e in self._pending):
            raise EmulatorError(f"update {update_id} is still queued; it will be delivered anyway")
        self._pending.append(_Pending(update_id, redelivery=True))
        self._updates_signal.notify()
        self._changed.notify()
        return update_id

    def block(self, user_id: int) -> None:
        """The user blocks the bot: sends to them get 403; a my_chat_member update says so."""
        self._set_blocked(user_id, True)

    def unblock(self, user_id: int) -> None:
        self._set_blocked(user_id, False)

    def _set_blocked(self, user_id: int, blocked: bool) -> None:
        chat = self._control_chat(user_id)
        if chat.user.blocked == blocked:
            return
        chat.user.blocked = blocked
        bot = self._bot_user()
        old, new = ({"status": "member", "user": bot},
                    {"status": "kicked", "user": bot, "until_date": 0})
        if not blocked:
            old, new = new, old
        self._touch(chat, by_bot=False)
        self._push_update("my_chat_member", chat.id, {
            "chat": self._chat_api(chat), "from": chat.user.api(), "date": self._date(),
            "old_chat_member": old, "new_chat_member": new,
        })

    # ------------------------------------------------------------------ read-outs

    def chat(self, chat_id: int) -> ChatView:
        return self._view(self._control_chat(chat_id))

    def chats(self) -> list[ChatSummary]:
        return [ChatSummary(c.id, c.user.api(), c.user.blocked, c.version, len(c.messages))
                for c in self._chats.values()]

    def version(self, chat_id: int) -> int:
        return self._control_chat(chat_id).version

    def commands(self, scope: str = "default", language_code: str = "") -> list[dict[str, Any]]:
        return list(self._commands.get((scope, language_code), []))

    def _view(self, chat: _Chat) -> ChatView:
        messages = []
        for m in chat.messages.values():
            keyboard = tuple(
                tuple(Button(b["text"], b.get("callback_data"), b.get("url"), bool(b.get("pay")))
                      for b in row)
                for row in (m.markup or {}).get("inline_keyboard", [])
            )
            inv = m.invoice
            messages.append(MessageView(
                message_id=m.message_id, sender=m.sender, date=m.date, text=m.text,
                entities=tuple(dict(e) for e in m.entities), parse_mode=m.parse_mode,
                source=m.source, keyboard=keyboard,
                invoice=InvoiceView(inv.title, inv.description, inv.currency, inv.total_amount,
                                    inv.payload, inv.paid, inv.charge_id) if inv else None,
                successful_payment=dict(m.successful_payment) if m.successful_payment else None,
                edited=m.edit_date is not None,
            ))
        reply_keyboard = tuple(
            tuple(b["text"] for b in row)
            for row in (chat.reply_keyboard or {}).get("keyboard", [])
        )
        return ChatView(chat.id, chat.user.api(), chat.user.blocked, chat.version,
                        tuple(messages), reply_keyboard, tuple(chat.answers))

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

    def first_reply(
        self, update_id: int, methods: Iterable[str] | None = None
    ) -> CallRecord | None:
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
            if (call.ok and call.started >= record.created_at
                    and (wanted is None or call.method in wanted)
                    and (best is None or call.started < best.started)):
                best = call
        return best

    # -------------------------------------------------------------------- waiting

    async def wait_for_change(
        self, chat_id: int, since: int | None = None, timeout: float = 5.0
    ) -> ChatView:
        """Wait until the chat's version exceeds ``since`` (default: its version now).

        In-process, ``send_text(...)`` followed directly by ``await wait_for_change(chat)``
        is race-free: the bot cannot act before this coroutine first awaits. Note a
        user's own action changes the version too; use ``wait_for_reply`` for "the bot
        reacted to this update".
        """
        chat = self._control_chat(chat_id)
        base = chat.version if since is None else since
        await wait_on(chat.signal, lambda: chat.version > base, timeout,
                      f"change in chat {chat_id} after version {base}")
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
        await wait_on(chat.signal, lambda: chat.last_bot_seq > seq, timeout,
                      f"bot reply to update {update_id} in chat {chat.id}")
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
        await wait_on(self._changed, lambda: record.confirmed_at is not None
                      and all(e.update_id != update_id for e in self._pending),
                      timeout, f"confirmation of update {update_id}")
        return dataclasses.replace(record)

    def set_closed(self, closed: bool) -> None:
        """While closed, long polls return at once: a stopping server is not held for 50 s."""
        self._closed = closed
        self._updates_signal.notify()
        self._changed.notify()


class Emulator:
    """All bots served by one emulator instance; tokens are registered on first use unless
    ``auto_register=False`` (then only ``add_bot`` tokens work, others get 401)."""

    def __init__(
        self, *, auto_register: bool = True, now: Callable[[], float] = time.time
    ) -> None:
        self.auto_register = auto_register
        self._now = now
        self._bots: dict[int, EmulatedBot] = {}
        self._closed = False

    def add_bot(
        self, token: str, *, username: str | None = None, first_name: str | None = None
    ) -> EmulatedBot:
        if not _valid_token(token):
            raise EmulatorError(f"not a bot token: {token!r} (expected '<digits>:<secret>')")
        bot_id = int(token.split(":", 1)[0])
        existing = self._bots.get(bot_id)
        if existing is not None:
            if existing.token != token:
                raise EmulatorError(f"bot {bot_id} is already registered with another token")
            return existing
        bot = self._bots[bot_id] = EmulatedBot(token, username=username,
                                               first_name=first_name, now=self._now)
        bot.set_closed(self._closed)
        return bot

    def bot(self, ref: str | int | None = None) -> EmulatedBot:
        """A bot by token, id, or (``None``/"default") the first one registered."""
        if ref is None or ref == "default":
            if not self._bots:
                raise UnknownObject("no bot has been registered or has called the API yet")
            return next(iter(self._bots.values()))
        if isinstance(ref, str) and ":" in ref:
            bot = self._bots.get(int(ref.split(":", 1)[0])) if _valid_token(ref) else None
            if bot is None or bot.token != ref:
                raise UnknownObject("no bot with this token")
            return bot
        try:
            return self._bots[int(ref)]
        except (KeyError, ValueError):
            raise UnknownObject(f"no bot {ref}") from None

    @property
    def bots(self) -> list[EmulatedBot]:
        return list(self._bots.values())

    def resolve_token(self, token: str) -> EmulatedBot:
        """The bot a Bot API request is for, or 401 as Telegram answers a bad token."""
        if _valid_token(token):
            bot = self._bots.get(int(token.split(":", 1)[0]))
            if bot is not None and bot.token == token:
                return bot
            if bot is None and self.auto_register:
                return self.add_bot(token)
        raise BotApiError(401, "Unauthorized")

    def close(self) -> None:
        self._set_closed(True)

    def open(self) -> None:
        self._set_closed(False)

    def _set_closed(self, closed: bool) -> None:
        self._closed = closed
        for bot in self._bots.values():
            bot.set_closed(closed)


def _valid_token(token: str) -> bool:
    head, sep, secret = token.partition(":")
    return (bool(sep) and head.isdigit() and 0 < len(head) < 20 and bool(secret)
            and all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in secret))
