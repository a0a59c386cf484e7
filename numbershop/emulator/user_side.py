"""The user side of an emulated bot: what users do (write, tap a button, pay, block the
bot) and the delivery knobs a test turns (resend a payment, redeliver an update)."""

from __future__ import annotations

import secrets
from typing import Any

from numbershop.emulator.errors import EmulatorError, UnknownObject
from numbershop.emulator.formatting import command_entities
from numbershop.emulator.records import _CallbackQuery, _Charge, _Chat, _Message, _Pending, _PreCheckout
from numbershop.emulator.signals import wait_on
from numbershop.emulator.views import CallbackAnswer, ChatView, Payment, Press
from numbershop.emulator.world import BotWorld


class UserSide(BotWorld):
    """Users acting on the bot; each action returns the update id it produced."""

    def add_user(
        self,
        user_id: int,
        *,
        first_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
    ) -> ChatView:
        """Make a user (and their private chat) exist without sending anything."""
        return self._view(self._ensure_user(user_id, first_name, username, language_code))

    def send_text(
        self,
        user_id: int,
        text: str,
        *,
        first_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
    ) -> int:
        """The user writes ``text`` to the bot; returns the update id."""
        if not text or not text.strip():
            raise EmulatorError("a user cannot send an empty message")
        chat = self._ensure_user(user_id, first_name, username, language_code)
        if chat.user.blocked:
            raise EmulatorError(f"user {user_id} has blocked the bot; unblock first")
        msg = _Message(
            chat.new_message_id(), "user", self._date(), text=text, entities=command_entities(text)
        )
        chat.messages[msg.message_id] = msg
        self._touch(chat, by_bot=False)
        return self._push_update("message", chat.id, self._message_api(chat, msg)).update_id

    def press_button(
        self,
        chat_id: int,
        message_id: int | None = None,
        *,
        data: str | None = None,
        text: str | None = None,
        forge: bool = False,
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
            rows: list[list[dict[str, Any]]] = msg.markup["inline_keyboard"] if msg.markup else []
            for row in rows:
                for button in row:
                    if (text is None or button["text"] == text) and (
                        data is None or button.get("callback_data") == data
                    ):
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
                texts = [b["text"] for row in (msg.markup or {}).get("inline_keyboard", []) for b in row]
                raise EmulatorError(f"message {msg.message_id} has no such button; it has {texts}")
            if "callback_data" not in button:
                kind = "a Pay button (use pay_invoice)" if button.get("pay") else "not a callback button"
                raise EmulatorError(f"button {button['text']!r} is {kind}")
            pressed = button["callback_data"]
        assert pressed is not None
        query_id = f"{self.id}{self._unique():010d}"
        self._queries[query_id] = _CallbackQuery(query_id, chat.id, msg.message_id, pressed)
        body = {
            "id": query_id,
            "from": chat.user.api(),
            "message": self._message_api(chat, msg),
            "chat_instance": str(abs(hash((self.id, chat.id)))),
            "data": pressed,
        }
        record = self._push_update("callback_query", chat.id, body)
        return Press(record.update_id, query_id, chat.id, msg.message_id, pressed)

    def callback_answer(self, query_id: str) -> CallbackAnswer | None:
        query = self._queries.get(query_id)
        if query is None:
            raise UnknownObject(f"no callback query {query_id}")
        return query.answer

    async def pay_invoice(
        self, chat_id: int, message_id: int | None = None, *, timeout: float = 10.0
    ) -> Payment:
        """The user pays an invoice: pre_checkout_query, then (if the bot says ok) the
        successful_payment message. Without ``message_id`` the newest unpaid invoice."""
        chat = self._control_chat(chat_id)
        if chat.user.blocked:
            raise EmulatorError(f"user {chat_id} has blocked the bot; unblock first")
        if message_id is None:
            msg = next(
                (m for m in reversed(chat.messages.values()) if m.invoice is not None and not m.invoice.paid),
                None,
            )
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
            update = self._push_update(
                "pre_checkout_query",
                chat.id,
                {
                    "id": query.id,
                    "from": chat.user.api(),
                    "currency": invoice.currency,
                    "total_amount": invoice.total_amount,
                    "invoice_payload": invoice.payload,
                },
            )
            base: dict[str, Any] = dict(
                chat_id=chat.id,
                invoice_message_id=msg.message_id,
                pre_checkout_query_id=query.id,
                pre_checkout_update_id=update.update_id,
                currency=invoice.currency,
                total_amount=invoice.total_amount,
                payload=invoice.payload,
            )
            try:
                await wait_on(chat.signal, lambda: query.answered, timeout, "answer to pre_checkout_query")
            except TimeoutError:
                query.expired = True
                return Payment(status="timeout", **base)
            if not query.ok:
                return Payment(status="declined", error_message=query.error_message, **base)
            charge_id = f"stx{self.id}x{self._unique():08d}{secrets.token_hex(6)}"
            invoice.paid, invoice.charge_id = True, charge_id
            paid = {
                "currency": invoice.currency,
                "total_amount": invoice.total_amount,
                "invoice_payload": invoice.payload,
                "telegram_payment_charge_id": charge_id,
                "provider_payment_charge_id": "",
            }
            self._charges[charge_id] = _Charge(chat.id, paid)
            update_id, pay_msg_id = self._user_payment_message(chat, paid)
            return Payment(
                status="paid", charge_id=charge_id, update_id=update_id, message_id=pay_msg_id, **base
            )
        finally:
            invoice.in_checkout = False

    def _user_payment_message(self, chat: _Chat, paid: dict[str, Any]) -> tuple[int, int]:
        msg = _Message(chat.new_message_id(), "user", self._date(), successful_payment=dict(paid))
        chat.messages[msg.message_id] = msg
        self._touch(chat, by_bot=False)
        return self._push_update("message", chat.id, self._message_api(chat, msg)).update_id, msg.message_id

    def resend_payment(self, charge_id: str) -> int:
        """Report a past payment again as a *new* message update (new update id, same
        ``telegram_payment_charge_id``): the bot must credit it once."""
        charge = self._charges.get(charge_id)
        if charge is None:
            raise UnknownObject(f"no payment with charge id {charge_id}")
        update_id, _ = self._user_payment_message(self._chats[charge.chat_id], charge.successful_payment)
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
        old: dict[str, Any] = {"status": "member", "user": bot}
        new: dict[str, Any] = {"status": "kicked", "user": bot, "until_date": 0}
        if not blocked:
            old, new = new, old
        self._touch(chat, by_bot=False)
        self._push_update(
            "my_chat_member",
            chat.id,
            {
                "chat": self._chat_api(chat),
                "from": chat.user.api(),
                "date": self._date(),
                "old_chat_member": old,
                "new_chat_member": new,
            },
        )
