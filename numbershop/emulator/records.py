"""The emulator's private records: users, chats, messages, queries, charges, faults.

Mutable on purpose (the emulated bot edits them in place); tests see frozen copies built by
``views``. Nothing here knows about HTTP or the Bot API's JSON shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from numbershop.emulator.signals import Signal
from numbershop.emulator.views import CallbackAnswer, CallRecord


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
    __slots__ = (
        "id",
        "user",
        "messages",
        "next_message_id",
        "version",
        "last_bot_seq",
        "reply_keyboard",
        "answers",
        "calls",
        "signal",
    )

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
