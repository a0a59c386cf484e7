"""The language of each update: the user's stored one, else their Telegram client's.

Registered on updates right after the update log, outside every other middleware, so the
error sentences, "working on it" and rate-limit replies are in the user's language too.
"""

from __future__ import annotations

from typing import Any

from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18nMiddleware

from bot.i18n import DEFAULT_LOCALE, I18N
from bot.users import UserDirectory


class UserLocale(I18nMiddleware):
    def __init__(self, users: UserDirectory) -> None:
        super().__init__(I18N)
        self.users = users

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        if user is None or user.is_bot:
            return DEFAULT_LOCALE
        return await self.users.locale(user)
