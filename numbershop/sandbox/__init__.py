"""The browser sandbox: the whole shop without Telegram, started by ``numbershop run`` when
``BOT_TOKEN`` is unset.

One process holds the Bot API emulator (with a fixed sandbox bot token), the real bot
pointed at it over HTTP, the simulator as the only provider, the scheduler, the dashboard and
a web chat page (``web``) where a person talks to the bot: messages as the bot rendered them,
inline buttons, Stars invoices paid with one click, and a panel (``panel``) that makes a code
arrive for any open activation. Codes also arrive on their own after a realistic delay.

The sandbox keeps its data in its own database (``./data/sandbox.db``, started afresh each
run, since the emulator and the simulator start afresh too) and ignores ``DATABASE_URL`` and
``REDIS_URL``: play money never mixes with a real shop's books, even on a server where
``BOT_TOKEN`` was left unset by mistake.
"""

from __future__ import annotations

#: The sandbox bot's token: fixed, so the emulator and the bot agree without configuration.
SANDBOX_TOKEN = "8088000001:numbershop-sandbox"
SANDBOX_BOT_USERNAME = "numbershop_sandbox_bot"
SANDBOX_BOT_NAME = "numbershop"
SANDBOX_DATABASE_URL = "sqlite+aiosqlite:///./data/sandbox.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8088
#: The person at the browser (``?user=N`` in the page's address picks another).
DEFAULT_USER_ID = 1001
DEFAULT_USER_NAME = "Alex"
#: Seconds after a rental until the simulator's code arrives on its own (min, max).
DEFAULT_CODE_DELAY_S = (10.0, 60.0)
