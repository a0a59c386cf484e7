"""Snapshots handed out by the control API: what a chat looks like, what the bot answered.

They are frozen copies, so a test asserting on a view never sees it change underneath;
``to_json`` gives the same data as the HTTP control API returns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


def to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Button:
    text: str
    callback_data: str | None = None
    url: str | None = None
    pay: bool = False
    copy_text: str | None = None  # what a CopyTextButton copies


@dataclass(frozen=True)
class InvoiceView:
    title: str
    description: str
    currency: str
    total_amount: int
    payload: str
    paid: bool
    charge_id: str | None = None


@dataclass(frozen=True)
class MessageView:
    message_id: int
    sender: Literal["bot", "user"]
    date: int
    text: str | None
    entities: tuple[dict[str, Any], ...] = ()
    parse_mode: str | None = None
    source: str | None = None  # the text as the bot sent it, markup included
    keyboard: tuple[tuple[Button, ...], ...] = ()
    invoice: InvoiceView | None = None
    successful_payment: dict[str, Any] | None = None
    edited: bool = False

    @property
    def buttons(self) -> list[Button]:
        return [b for row in self.keyboard for b in row]

    @property
    def button_texts(self) -> list[str]:
        return [b.text for b in self.buttons]

    def button(self, text: str) -> Button:
        for b in self.buttons:
            if b.text == text:
                return b
        raise KeyError(f"no button {text!r} on message {self.message_id}: {self.button_texts}")


@dataclass(frozen=True)
class CallbackAnswer:
    query_id: str
    chat_id: int
    message_id: int
    data: str
    text: str | None
    show_alert: bool
    url: str | None


@dataclass(frozen=True)
class ChatView:
    chat_id: int
    user: dict[str, Any]
    blocked: bool
    version: int
    messages: tuple[MessageView, ...]
    reply_keyboard: tuple[tuple[str, ...], ...] = ()
    callback_answers: tuple[CallbackAnswer, ...] = ()

    def bot_messages(self) -> list[MessageView]:
        return [m for m in self.messages if m.sender == "bot"]

    def last(self, sender: Literal["bot", "user"] | None = "bot") -> MessageView:
        for m in reversed(self.messages):
            if sender is None or m.sender == sender:
                return m
        raise LookupError(f"chat {self.chat_id} has no {sender or ''} messages")

    def message(self, message_id: int) -> MessageView:
        for m in self.messages:
            if m.message_id == message_id:
                return m
        raise LookupError(f"chat {self.chat_id} has no message {message_id}")

    def texts(self, sender: Literal["bot", "user"] | None = "bot") -> list[str]:
        return [m.text or "" for m in self.messages if sender is None or m.sender == sender]


@dataclass(frozen=True)
class ChatSummary:
    chat_id: int
    user: dict[str, Any]
    blocked: bool
    version: int
    message_count: int


@dataclass(frozen=True)
class Press:
    """A button press: the ``callback_query`` update it produced and its query id."""

    update_id: int
    query_id: str
    chat_id: int
    message_id: int
    data: str


@dataclass(frozen=True)
class Payment:
    """The outcome of paying an invoice.

    ``status`` is "paid" (``charge_id`` and ``update_id`` of the successful_payment message
    are set), "declined" (the bot answered the pre-checkout query with ok=false;
    ``error_message`` is what it said) or "timeout" (no answer in time: Telegram cancels).
    """

    status: Literal["paid", "declined", "timeout"]
    chat_id: int
    invoice_message_id: int
    pre_checkout_query_id: str
    pre_checkout_update_id: int
    currency: str
    total_amount: int
    payload: str
    charge_id: str | None = None
    update_id: int | None = None
    message_id: int | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class CallRecord:
    """One Bot API call, timed with ``time.perf_counter`` (``started`` is arrival)."""

    seq: int
    method: str
    chat_id: int | None
    started: float
    finished: float
    ok: bool
    error_code: int | None = None
    description: str | None = None


@dataclass
class UpdateRecord:
    """One update and its delivery history (perf_counter times; None until it happens)."""

    update_id: int
    kind: str
    chat_id: int | None
    payload: dict[str, Any] = field(repr=False)
    created_at: float = 0.0
    delivered_at: float | None = None
    deliveries: int = 0
    confirmed_at: float | None = None
    dropped: bool = False  # not in allowed_updates, or a webhook delivery given up
