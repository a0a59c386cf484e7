"""Errors of the emulator: the Bot API's own refusals, and misuse of the control API.

``BotApiError`` is what a bot sees: it is rendered exactly as Telegram renders an error
(``{"ok": false, "error_code": …, "description": …, "parameters": …}``), so aiogram raises
the same exception class it would raise against Telegram. ``EmulatorError`` is what a test or
the sandbox sees when it asks the emulator for something impossible (press a button that is
not there, pay an invoice twice); it never reaches the bot.
"""

from __future__ import annotations

from typing import Any

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
MESSAGE_TO_EDIT_NOT_FOUND = "Bad Request: message to edit not found"
MESSAGE_TO_DELETE_NOT_FOUND = "Bad Request: message to delete not found"
MESSAGE_CANT_BE_EDITED = "Bad Request: message can't be edited"
NO_TEXT_TO_EDIT = "Bad Request: there is no text in the message to edit"
CHAT_NOT_FOUND = "Bad Request: chat not found"
TEXT_EMPTY = "Bad Request: message text is empty"
TEXT_TOO_LONG = "Bad Request: message is too long"
BUTTON_DATA_INVALID = "Bad Request: BUTTON_DATA_INVALID"
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
BOT_BLOCKED = "Forbidden: bot was blocked by the user"
GETUPDATES_CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)


class BotApiError(Exception):
    """A refusal in Bot API shape; ``error_code`` doubles as the HTTP status."""

    def __init__(self, error_code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(detail: str) -> BotApiError:
    return BotApiError(400, detail if detail.startswith("Bad Request") else f"Bad Request: {detail}")


class EmulatorError(Exception):
    """The control API was asked for something that cannot happen in a real chat."""


class UnknownObject(EmulatorError, LookupError):
    """A bot, chat, message, query or update the emulator has never seen."""
