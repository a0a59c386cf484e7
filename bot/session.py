"""The Bot API client session: aiogram's aiohttp session, lighter where the shop can tell.

Three changes, each measured in ``python -m bench.bot`` (a Bot API call was about a third of
the bot's CPU, and most of that was pydantic building and rebuilding Telegram objects):

* Bodies are JSON, not ``multipart/form-data``. aiogram frames every method as a form so
  one code path can attach files; the shop sends no files, and encoding the form (each
  field JSON-encoded on its own, then framed) was a third of a call's CPU. Telegram accepts
  ``application/json`` for every method; a call that carries an ``InputFile`` still goes
  the multipart way.
* A successful edit returns ``True`` instead of the edited message. Telegram answers an
  edit with the whole message, keyboard included, and aiogram turns it into models — one
  per button — that nobody reads: the shop edits screens and never looks at the echo. The
  Bot API itself returns ``True`` for some edits, so callers already have to accept it.
* Updates arrive without the keyboard of the message a button was pressed on
  (``callback_query.message.reply_markup``). Telegram sends the whole keyboard back with
  every tap; the handlers read the message's id, chat and text and render the next screen
  themselves, so parsing a dozen buttons per tap was pure cost. A sent message comes back
  without its keyboard for the same reason: the shop sent it and never reads it back.

Errors are aiogram's own (``check_response``): status codes, ``retry_after``, decode
failures and typed results of every other method are unchanged.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import ClientDecodeError
from aiogram.methods import (
    EditMessageCaption,
    EditMessageReplyMarkup,
    EditMessageText,
    GetUpdates,
    SendMessage,
    TelegramMethod,
)
from aiogram.methods.base import Response, TelegramType
from aiogram.types import Message, Update
from aiohttp import BytesPayload, FormData
from pydantic import ValidationError

EDITS = (EditMessageText, EditMessageReplyMarkup, EditMessageCaption)
_EDITED: Response[Any] = Response[bool].model_construct(ok=True, result=True)
_UPDATES = Response[list[Update]]
_SENT = Response[Message]
_SHORTCUTS = (GetUpdates, SendMessage, *EDITS)


class JsonSession(AiohttpSession):
    def json_body(self, bot: Bot, method: TelegramMethod[Any]) -> str | None:
        """The method's parameters as one JSON object, or None when it attaches files.

        Values are prepared as aiogram's own ``prepare_value`` does (defaults such as the
        parse mode resolved, models dumped, dates as timestamps); fields aiogram would leave
        out of a form (None, empty strings) are left out here too.
        """
        files: dict[str, Any] = {}
        body: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False, exclude_none=True).items():
            prepared = self._plain(value, bot, files)
            if prepared is None or prepared == "":
                continue
            body[key] = prepared
        return None if files else self.json_dumps(body)

    def _plain(self, value: Any, bot: Bot, files: dict[str, Any]) -> Any:
        """``prepare_value`` with a fast lane for what a dumped method is almost all made
        of (strings, numbers, dicts and lists of them, e.g. a keyboard): exact type checks
        instead of aiogram's chain of ``isinstance`` against abstract classes, which cost
        more than the rest of building a request. Anything else — defaults, enums, dates,
        files — goes to ``prepare_value`` itself."""
        kind = type(value)
        if kind is str or kind is int or kind is bool or kind is float or value is None:
            return value
        if kind is dict:
            return {k: p for k, v in value.items() if (p := self._plain(v, bot, files)) is not None}
        if kind is list:
            return [p for v in value if (p := self._plain(v, bot, files)) is not None]
        return self.prepare_value(value, bot=bot, files=files, _dumps_json=False)

    def build_form_data(self, bot: Bot, method: TelegramMethod[Any]) -> FormData:
        """The request body aiogram's ``make_request`` posts: JSON unless files go along.

        Only the body changes; sending, timeouts and error mapping stay aiogram's own.
        """
        body = self.json_body(bot, method)
        if body is None:
            return super().build_form_data(bot, method)
        payload = BytesPayload(body.encode(), content_type="application/json")
        return payload  # type: ignore[return-value]  # aiohttp posts any payload as `data`

    def check_response(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        status_code: int,
        content: str,
    ) -> Response[TelegramType]:
        """aiogram's check, with the shortcuts the module describes for successes."""
        if HTTPStatus.OK <= status_code <= HTTPStatus.IM_USED and isinstance(method, _SHORTCUTS):
            try:
                data = self.json_loads(content)
            except Exception:
                data = None
            if isinstance(data, dict) and data.get("ok") is True:
                if isinstance(method, EDITS):
                    return _EDITED
                model: type[Response[Any]]
                if isinstance(method, GetUpdates):
                    model = _UPDATES
                    for update in data.get("result") or ():
                        message = (update.get("callback_query") or {}).get("message")
                        if isinstance(message, dict):
                            message.pop("reply_markup", None)
                else:
                    model = _SENT
                    if isinstance(data.get("result"), dict):
                        data["result"].pop("reply_markup", None)
                try:
                    return model.model_validate(data, context={"bot": bot})  # type: ignore[return-value]
                except ValidationError as exc:
                    raise ClientDecodeError("Failed to deserialize object", exc, data) from exc
        return super().check_response(bot, method, status_code, content)
