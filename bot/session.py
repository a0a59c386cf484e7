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

import asyncio
from typing import Any, cast

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiohttp import ClientError

_JSON = {"Content-Type": "application/json"}


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

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None,
    ) -> TelegramType:
        body = self.json_body(bot, method)
        if body is None:
            return await super().make_request(bot, method, timeout)
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        try:
            async with session.post(url, data=body, headers=_JSON,
                                    timeout=self.timeout if timeout is None else timeout) as resp:
                raw_result = await resp.text()
        except asyncio.TimeoutError as e:
            raise TelegramNetworkError(method=method, message="Request timeout error") from e
        except ClientError as e:
            raise TelegramNetworkError(method=method, message=f"{type(e).__name__}: {e}") from e
        response = self.check_response(bot=bot, method=method, status_code=resp.status,
                                       content=raw_result)
        return cast(TelegramType, response.result)
