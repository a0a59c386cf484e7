"""Reply markup as Telegram accepts it: inline keyboards validated and normalised.

Normalising (dropping absent fields, treating an empty keyboard as none) matters because
"message is not modified" compares the stored markup with the new one, and aiogram may send
the same keyboard with keys in another order or with defaults spelled out.
"""

from __future__ import annotations

from typing import Any

from numbershop.emulator.errors import BUTTON_DATA_INVALID, BotApiError, bad_request

MAX_CALLBACK_DATA_BYTES = 64
MAX_COPY_TEXT_CHARS = 256  # CopyTextButton.text: 1-256 characters

_ACTIONS = (
    "callback_data",
    "url",
    "pay",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
)
_EXTRAS = ("icon_custom_emoji_id", "style")

KEEP = "keep"
REMOVE = "remove"


def parse_reply_markup(markup: Any) -> tuple[dict[str, Any] | None, Any]:
    """(inline keyboard to attach to the message, change to the user's reply keyboard).

    The second item is ``KEEP`` (leave the custom keyboard as it is), ``REMOVE``, or the new
    reply keyboard.
    """
    if markup is None:
        return None, KEEP
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        return normalize_inline(markup), KEEP
    if "keyboard" in markup:
        rows = markup["keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request('field "keyboard" of the ReplyKeyboardMarkup should be an Array of Arrays')
        keyboard = [[b if isinstance(b, dict) else {"text": str(b)} for b in row] for row in rows]
        for row in keyboard:
            for button in row:
                if not isinstance(button.get("text"), str) or not button["text"]:
                    raise bad_request("can't parse keyboard button: Text must be non-empty")
        return None, {**markup, "keyboard": keyboard}
    if markup.get("remove_keyboard"):
        return None, REMOVE
    return None, KEEP  # force_reply and anything else leave the keyboard alone


def normalize_inline(markup: Any) -> dict[str, Any] | None:
    if markup is None:
        return None
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays')
    clean_rows = []
    for row in rows:
        clean_row = []
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise bad_request('can\'t parse inline keyboard button: Field "text" must be of type String')
            clean = {"text": button["text"]}
            for key in _ACTIONS + _EXTRAS:
                if button.get(key) is not None:
                    clean[key] = button[key]
            if not any(key in clean for key in _ACTIONS):
                raise bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                )
            if "copy_text" in clean:
                _check_copy_text(clean["copy_text"])
            data = clean.get("callback_data")
            if data is not None:
                if not isinstance(data, str):
                    data = clean["callback_data"] = str(data)
                if not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                    raise BotApiError(400, BUTTON_DATA_INVALID)
            clean_row.append(clean)
        if clean_row:
            clean_rows.append(clean_row)
    return {"inline_keyboard": clean_rows} if clean_rows else None


def _check_copy_text(value: Any) -> None:
    """A CopyTextButton as Telegram takes it: an object whose ``text`` has 1-256 characters."""
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        raise bad_request('can\'t parse inline keyboard button: Field "copy_text" must be of type Object')
    if not 1 <= len(value["text"]) <= MAX_COPY_TEXT_CHARS:
        raise bad_request("BUTTON_COPY_TEXT_INVALID")
