"""Anything no other router took: a hint instead of silence.

Unmatched callback queries (garbage or forged data) are answered by the CallbackAnswerer
middleware; this router only handles messages that are not text (stickers, photos, …).
"""

from __future__ import annotations

from aiogram.types import Message

from bot import texts
from bot.handlers import HandlerSet

handlers = HandlerSet("fallback")


@handlers.message()
async def anything_else(message: Message) -> None:
    await message.answer(texts.NOT_UNDERSTOOD)
