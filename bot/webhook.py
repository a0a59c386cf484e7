"""Webhook mode: Telegram POSTs each update to us instead of our long-polling for it.

``WebhookServer`` serves POST on the webhook URL's path with aiohttp. Per request:

1. ``X-Telegram-Bot-Api-Secret-Token`` must equal ``WEBHOOK_SECRET`` (``hmac.compare_digest``)
   or the answer is 401 and nothing is read further: only Telegram knows the secret.
2. The body is parsed as an ``Update`` (400 if it is not one).
3. The update is handled *before* answering (``Dispatcher.feed_update``): a 200 means it has
   had its effect, so a worker killed mid-update leaves Telegram to redeliver it.
4. 200 when the dispatcher returned; 500 when it raised (the shop's middlewares already turn
   user-facing errors into replies, so only an unexpected crash gets here). Telegram retries
   any non-2xx reply; the update log (``UpdateDedupe``) drops the repeat of an update already
   recorded, so nothing happens twice, while a ``successful_payment`` is handled again and
   credited idempotently on its charge id, so a payment is never lost.
5. The 200 carries the callback answer when the handler left one (``bot.webhook_reply``):
   Telegram runs a Bot API method put in the reply's body, so a tap costs one outgoing
   request fewer. The answer leaves with the 200, so after the update log has recorded the
   update (one batched write), not straight after the handler as its own request would; a
   500 discards it with the rest of the update. A slow handler's early "working on it" is
   still a request of its own, since the reply cannot leave before the update is done.

Several workers may serve one port (``reuse_port``, SO_REUSEPORT); each registers the same
webhook on start, which is idempotent on Telegram's side. No worker deletes the webhook on
stop: updates queue at Telegram until a worker is back.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError

from bot.webhook_reply import WebhookReply

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str
    host: str = "127.0.0.1"
    port: int = 8081
    max_connections: int = 40
    reuse_port: bool = False

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"


class WebhookServer:
    """The aiohttp application and site answering Telegram's POSTs for one dispatcher."""

    def __init__(self, bot: Bot, dp: Dispatcher, config: WebhookConfig) -> None:
        self.bot = bot
        self.dp = dp
        self.config = config
        self._secret = config.secret.encode()
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(self.config.path, self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.warning("webhook request without the right secret token from %s", request.remote)
            return web.Response(status=401, text="unauthorized")
        try:
            update = Update.model_validate(await request.json(), context={"bot": self.bot})
        except (ValueError, ValidationError):
            return web.Response(status=400, text="not an update")
        reply = WebhookReply()
        try:
            await self.dp.feed_update(self.bot, update, webhook_reply=reply)
        except Exception:
            log.exception("update %s failed; answering 500 so Telegram retries it", update.update_id)
            return web.Response(status=500, text="failed")
        body = reply.body()
        if body is not None:
            return web.Response(status=200, text=body, content_type="application/json")
        return web.Response(status=200, text="ok")

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free one)."""
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=15.0)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(
            runner, self.config.host, self.config.port, reuse_port=self.config.reuse_port or None
        )
        await site.start()
        host, port = runner.addresses[0][:2]
        return str(host), int(port)

    async def stop(self) -> None:
        """Stop listening and let the requests in flight finish (bounded)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def register(self, url: str | None = None) -> None:
        """``setWebhook`` (``url`` or the configured one) with the update types this
        dispatcher handles; pending updates are kept."""
        await self.bot.set_webhook(
            url=url or self.config.url,
            secret_token=self.config.secret,
            allowed_updates=self.dp.resolve_used_update_types(),
            max_connections=self.config.max_connections,
            drop_pending_updates=False,
        )
