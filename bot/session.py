"""The Bot API client session: aiogram's aiohttp session, posting JSON instead of multipart.

aiogram sends every method as ``multipart/form-data`` so that the same code path can attach
files. The shop sends no files, and building and encoding a multipart body (each field
JSON-encoded on its own, then framed with boundaries) was about a third of the CPU of a Bot
API call in the bot benchmark. Telegram accepts ``application/json`` bodies for every
method; a call that does carry an ``InputFile`` still goes the multipart way.

Responses are parsed and checked exactly as aiogram does (``check_response``), so errors,
``retry_after`` and the typed results are unchanged.
"""

from __future__ import annotations

from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods import TelegramMethod
from aiohttp import BytesPayload, FormData


class JsonSession(AiohttpSession):
    def json_body(self, bot: Bot, method: TelegramMethod[Any]) -> str | None:
        """The method's parameters as one JSON object, or None when it attaches files.

        Values are prepared by aiogram's own ``prepare_value`` (defaults such as the parse
        mode resolved, models dumped, dates as timestamps); fields aiogram would leave out
        of a form (None, empty strings) are left out here too.
        """
        files: dict[str, Any] = {}
        body: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared is None or prepared == "":
                continue
            body[key] = prepared
        return None if files else self.json_dumps(body)

    def build_form_data(self, bot: Bot, method: TelegramMethod[Any]) -> FormData:
        """The request body aiogram's ``make_request`` posts: JSON unless files go along.

        Only the body changes; sending, timeouts and error mapping stay aiogram's own.
        """
        body = self.json_body(bot, method)
        if body is None:
            return super().build_form_data(bot, method)
        payload = BytesPayload(body.encode(), content_type="application/json")
        return payload  # type: ignore[return-value]  # aiohttp posts any payload as `data`
