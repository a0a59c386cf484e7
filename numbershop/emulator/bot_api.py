"""The bot side of an emulated bot: the Bot API methods a bot calls, validated as Telegram
validates them and refused with ``BotApiError`` (``methods`` maps HTTP requests onto them).

Updates follow getUpdates semantics: an update stays queued until getUpdates is called with
an ``offset`` above its id. A redelivered update is always handed out in a batch of its
own, so the client's next offset (its id + 1) confirms exactly it and nothing newer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from numbershop.emulator import errors as E
from numbershop.emulator.errors import BotApiError, bad_request
from numbershop.emulator.formatting import MAX_TEXT_UTF16, render, utf16_len
from numbershop.emulator.keyboards import KEEP, REMOVE, normalize_inline, parse_reply_markup
from numbershop.emulator.records import _Chat, _Invoice, _Message, _Pending
from numbershop.emulator.views import CallbackAnswer
from numbershop.emulator.webhook import WebhookSide
from numbershop.emulator.world import DEFAULT_UPDATE_TYPES

MAX_POLL_TIMEOUT = 50.0


class BotApiSide(WebhookSide):
    """What a bot can do: the ``api_*`` methods (the webhook ones in ``webhook``)."""

    def api_get_me(self) -> dict[str, Any]:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def api_get_updates(
        self,
        offset: int | None,
        limit: int,
        timeout: float,
        allowed_updates: list[str] | None,
    ) -> list[dict[str, Any]]:
        self._check_no_webhook()
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
                    self._check_no_webhook()  # a webhook was set meanwhile
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
        self,
        chat_id: int | None,
        text: str | None,
        *,
        parse_mode: str | None = None,
        entities: list[dict[str, Any]] | None = None,
        reply_markup: Any = None,
    ) -> dict[str, Any]:
        chat = self._bot_chat(chat_id)
        plain, ents = self._render_text(text, parse_mode, entities)
        inline, keyboard_change = parse_reply_markup(reply_markup)
        msg = _Message(
            chat.new_message_id(),
            "bot",
            self._date(),
            text=plain,
            entities=ents,
            parse_mode=parse_mode,
            source=text,
            markup=inline,
        )
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
        self,
        chat_id: int | None,
        message_id: int | None,
        text: str | None,
        *,
        parse_mode: str | None = None,
        entities: list[dict[str, Any]] | None = None,
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
        self,
        query_id: str | None,
        *,
        text: str | None = None,
        show_alert: bool = False,
        url: str | None = None,
    ) -> int:
        """Records the answer; returns the chat id the query came from."""
        query = self._queries.get(query_id or "")
        if query is None or query.answer is not None:
            raise BotApiError(400, E.QUERY_INVALID)
        query.answer = CallbackAnswer(
            query.id, query.chat_id, query.message_id, query.data, text, show_alert, url
        )
        chat = self._chats[query.chat_id]
        chat.answers.append(query.answer)
        self._touch(chat, by_bot=True)
        return chat.id

    def api_send_invoice(
        self,
        chat_id: int | None,
        *,
        title: str | None,
        description: str | None,
        payload: str | None,
        currency: str | None,
        prices: Any,
        provider_token: str | None,
        start_parameter: str | None = None,
        reply_markup: Any = None,
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

    def api_answer_pre_checkout(self, query_id: str | None, ok: bool, error_message: str | None) -> int:
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
        gifts = dict.fromkeys(
            (
                "unlimited_gifts",
                "limited_gifts",
                "unique_gifts",
                "premium_subscription",
                "gifts_from_channels",
            ),
            True,
        )
        return {
            **self._chat_api(chat),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": gifts,
        }

    def api_chat_action(self, chat_id: int | None) -> bool:
        self._bot_chat(chat_id)  # unknown chat → 400, blocked → 403, like Telegram
        return True

    def api_set_commands(self, commands: Any, scope: Any, language_code: str | None) -> bool:
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("commands must be a list of at most 100 BotCommand")
        clean = []
        for c in commands:
            name = c.get("command") if isinstance(c, dict) else None
            desc = c.get("description") if isinstance(c, dict) else None
            if (
                not isinstance(name, str)
                or not 1 <= len(name) <= 32
                or not all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in name)
                or name != name.lower()
            ):
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

    def set_closed(self, closed: bool) -> None:
        """While closed, long polls return at once: a stopping server is not held for 50 s."""
        self._closed = closed
        self._updates_signal.notify()
        self._changed.notify()
