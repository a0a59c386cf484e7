"""The answer a webhook request may carry back to Telegram instead of a Bot API call.

Telegram runs a Bot API method given in the body of a webhook's 200 reply, saving the bot
one HTTP request of its own; it reports neither the result nor an error. ``WebhookServer``
hands each update one ``WebhookReply`` (``data["webhook_reply"]`` in middlewares) and sends
what it holds; ``CallbackAnswerer`` puts a callback answer there. Polling mode has no slot.

Only ``answerCallbackQuery`` travels this way: its parameters are plain JSON values, so the
body needs none of the session's preparation (defaults, files, nested models).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiogram.methods import AnswerCallbackQuery


@dataclass
class WebhookReply:
    method: AnswerCallbackQuery | None = None

    def answer(self, query_id: str, text: str | None = None, *, alert: bool = False) -> None:
        """Answer callback query ``query_id`` with this reply."""
        self.method = AnswerCallbackQuery(callback_query_id=query_id, text=text, show_alert=alert)

    def body(self) -> str | None:
        """The reply's JSON body, or None when there is nothing to run."""
        if self.method is None:
            return None
        return json.dumps(
            {"method": self.method.__api_method__, **self.method.model_dump(exclude_none=True)},
            ensure_ascii=False,
        )
