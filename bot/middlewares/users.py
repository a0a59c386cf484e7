"""The shop user for the Telegram user, created on first sight; handlers get ``user_id``."""

from __future__ import annotations

from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Message, TelegramObject, User

from bot.middlewares.handler import Handler
from bot.users import UserDirectory


class UserResolver(BaseMiddleware):
    def __init__(self, users: UserDirectory) -> None:
        self.users = users

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        chat = data.get("event_chat")
        if user is None or user.is_bot:
            return None
        if isinstance(event, Message) and chat is not None and chat.type != "private":
            return None  # the shop lives in private chats only
        data["user_id"] = await self.users.resolve(user)
        return await handler(event, data)
