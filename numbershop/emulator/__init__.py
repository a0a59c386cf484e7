"""An in-memory Telegram Bot API server for tests, benchmarks and the browser sandbox.

Python::

    async with running_emulator() as (emulator, base_url):
        tg = emulator.add_bot(TOKEN)
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))
        update_id = tg.send_text(42, "/start")
        chat = await tg.wait_for_reply(update_id)

HTTP: the Bot API at ``{base_url}/bot{token}/{method}``; the control API under
``{base_url}/control/`` (routes listed in ``numbershop.emulator.control``).
"""

from numbershop.emulator.errors import BotApiError, EmulatorError, UnknownObject
from numbershop.emulator.server import make_app, running_emulator
from numbershop.emulator.state import EmulatedBot, Emulator
from numbershop.emulator.views import (
    Button,
    CallbackAnswer,
    CallRecord,
    ChatSummary,
    ChatView,
    InvoiceView,
    MessageView,
    Payment,
    Press,
    UpdateRecord,
    to_json,
)

__all__ = [
    "BotApiError",
    "Button",
    "CallRecord",
    "CallbackAnswer",
    "ChatSummary",
    "ChatView",
    "EmulatedBot",
    "Emulator",
    "EmulatorError",
    "InvoiceView",
    "MessageView",
    "Payment",
    "Press",
    "UnknownObject",
    "UpdateRecord",
    "make_app",
    "running_emulator",
    "to_json",
]
