"""Webhook delivery on an emulated bot: ``setWebhook``, ``deleteWebhook``, ``getWebhookInfo``.

Telegram's semantics, as far as a test can see them:

* One token, one mode. While a webhook is set, ``getUpdates`` answers 409 Conflict; a long
  poll waiting when the webhook is set is ended with the same 409. ``deleteWebhook`` (or
  ``setWebhook`` with an empty url) switches back, and queued updates wait for getUpdates.
* One update per POST to the url, with ``X-Telegram-Bot-Api-Secret-Token`` when a secret was
  set, over at most ``max_connections`` connections at once (an aiohttp connector limit and
  a semaphore). No order is promised across connections; each update is retried on its own.
* A 2xx reply confirms the update. Anything else (another status, a refused connection, a
  timeout) is recorded as ``last_error_date``/``last_error_message`` and retried after a
  doubling back-off, at most ``webhook_max_attempts`` times; then the update is dropped, as
  Telegram gives up "after a reasonable number of attempts".
* A 2xx reply whose body is a JSON object (``application/json``) with a "method" is also a
  Bot API call, run for the bot as if the bot had made it over HTTP: same validation, same
  faults, same call-log entry, timed from the reply's arrival. Its result or error goes
  nowhere, as Telegram reports neither, and the update is confirmed either way. As Telegram
  does, getters, setWebhook, deleteWebhook, close and logOut are not run from a reply.

Differences on purpose: the emulator delivers only to loopback addresses (it must never be
made to POST to arbitrary hosts), accepts ``http`` and any port there (tests serve the bot on
127.0.0.1 with a random port), and keeps no 24-hour limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from numbershop.emulator import errors as E
from numbershop.emulator.errors import BotApiError, bad_request
from numbershop.emulator.numeric import strict_json
from numbershop.emulator.records import _Pending
from numbershop.emulator.world import DEFAULT_UPDATE_TYPES, BotWorld

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_LOOPBACK_NAMES = {"localhost"}
_NOT_FROM_REPLIES = re.compile(r"get.*|setwebhook|deletewebhook|close|logout")  # lower case


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    last_error_date: int | None = None
    last_error_message: str | None = None
    inflight: set[int] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


def _loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class WebhookSide(BotWorld):
    """The webhook methods and the delivery loop; see the module docstring."""

    #: Attempts per update before it is dropped, and the first back-off (then doubled).
    webhook_max_attempts = 8
    webhook_retry_base_s = 0.05
    webhook_retry_max_s = 2.0
    webhook_timeout_s = 10.0

    def terminate_tls(self, public_url: str, local_url: str) -> None:
        """Deliver what is registered for ``public_url`` to ``local_url`` instead, as the
        TLS-terminating proxy in front of the workers does in production (``deploy/``).

        The bot only accepts an https ``WEBHOOK_URL`` and registers it on every start, so a
        worker restarted mid-test re-registers the public URL; routing here keeps delivery
        going to the plain-HTTP listener without the test racing that registration.
        """
        self._tls_routes[public_url] = local_url

    @property
    def webhook_url(self) -> str:
        hook = self._webhook
        return hook.url if hook is not None else ""

    async def api_set_webhook(
        self,
        url: str | None,
        secret_token: str | None,
        max_connections: int | None,
        allowed_updates: list[str] | None,
        drop_pending_updates: bool,
    ) -> bool:
        if not url:
            await self.api_delete_webhook(drop_pending_updates)
            return True
        if not _loopback(url) and url not in self._tls_routes:  # a routed URL ends on loopback
            raise bad_request("bad webhook: the emulator delivers to loopback http(s) URLs only")
        if secret_token is not None and not _SECRET.fullmatch(secret_token):
            raise bad_request("secret token contains unallowed characters")
        connections = 40 if max_connections is None else max_connections
        if not 1 <= connections <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        if allowed_updates is not None:
            self._allowed = frozenset(allowed_updates) if allowed_updates else DEFAULT_UPDATE_TYPES
        await self._stop_delivery()
        if drop_pending_updates:
            self._drop_pending()
        self._webhook = _Webhook(url, secret_token, connections, allowed_updates)
        self._poller = object()  # a long poll still waiting now ends with 409
        self._updates_signal.notify()
        self._webhook.task = asyncio.create_task(self._deliver_loop(self._webhook), name=f"webhook-{self.id}")
        self._changed.notify()
        return True

    async def api_delete_webhook(self, drop_pending_updates: bool) -> bool:
        await self._stop_delivery()
        self._webhook = None
        if drop_pending_updates:
            self._drop_pending()
        self._changed.notify()
        return True

    def api_webhook_info(self) -> dict[str, Any]:
        hook = self._webhook
        info: dict[str, Any] = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            if hook.allowed_updates is not None:
                info["allowed_updates"] = list(hook.allowed_updates)
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    def _check_no_webhook(self) -> None:
        """getUpdates calls this: one token, one mode."""
        if self._webhook is not None:
            raise BotApiError(409, E.WEBHOOK_ACTIVE)

    def _drop_pending(self) -> None:
        now = time.perf_counter()
        for entry in self._pending:
            self._updates[entry.update_id].confirmed_at = now
        self._pending.clear()

    async def _stop_delivery(self) -> None:
        hook = self._webhook
        if hook is None or hook.task is None:
            return
        hook.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hook.task
        hook.inflight.clear()

    async def _deliver_loop(self, hook: _Webhook) -> None:
        connector = aiohttp.TCPConnector(limit=hook.max_connections)
        timeout = aiohttp.ClientTimeout(total=self.webhook_timeout_s)
        slots = asyncio.Semaphore(hook.max_connections)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            try:
                while not self._closed:
                    for entry in list(self._pending):
                        if entry.update_id not in hook.inflight:
                            hook.inflight.add(entry.update_id)
                            task = asyncio.create_task(self._deliver(http, hook, slots, entry))
                            tasks.add(task)
                            task.add_done_callback(tasks.discard)
                    await self._updates_signal.wait(3600)
            finally:
                for task in list(tasks):
                    task.cancel()
                for task in list(tasks):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _deliver(
        self, http: aiohttp.ClientSession, hook: _Webhook, slots: asyncio.Semaphore, entry: _Pending
    ) -> None:
        record = self._updates[entry.update_id]
        headers = {SECRET_HEADER: hook.secret_token} if hook.secret_token else {}
        delay = self.webhook_retry_base_s
        for attempt in range(1, self.webhook_max_attempts + 1):
            async with slots:
                record.deliveries += 1
                if record.delivered_at is None:
                    record.delivered_at = time.perf_counter()
                url = self._tls_routes.get(hook.url, hook.url)
                error, call = await self._post(http, url, record.payload, headers)
            if error is None:
                if call is not None:
                    await self._run_reply(call)
                self._finish(hook, entry)
                return
            hook.last_error_date = self._date()
            hook.last_error_message = error
            self._changed.notify()
            if attempt < self.webhook_max_attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.webhook_retry_max_s)
        log.warning(
            "webhook: update %s dropped after %d attempts: %s",
            entry.update_id,
            self.webhook_max_attempts,
            hook.last_error_message,
        )
        record.dropped = True
        self._finish(hook, entry)

    @staticmethod
    async def _post(
        http: aiohttp.ClientSession, url: str, payload: dict[str, Any], headers: dict[str, str]
    ) -> tuple[str | None, dict[str, Any] | None]:
        """(None, the Bot API call the reply carries, if any) on a 2xx reply, else (the error
        as getWebhookInfo words it, None)."""
        try:
            async with http.post(url, json=payload, headers=headers) as response:
                body = await response.read()
                if not 200 <= response.status < 300:
                    return f"Wrong response from the webhook: {response.status} {response.reason}", None
                if response.content_type != "application/json":
                    return None, None
        except TimeoutError:
            return "Read timeout expired", None
        except aiohttp.ClientError as exc:
            return f"Connection failed: {exc}", None
        try:
            call = strict_json(body.decode())
        except ValueError:  # undecodable bytes too: UnicodeDecodeError is a ValueError
            return None, None
        return None, call if isinstance(call, dict) else None

    async def _run_reply(self, call: dict[str, Any]) -> None:
        """Run the method a webhook reply names, dropping its result and error as Telegram does."""
        # Here, not at the top: methods imports the state this module is part of.
        from numbershop.emulator.methods import Params, run_method
        from numbershop.emulator.state import EmulatedBot

        assert isinstance(self, EmulatedBot)
        started = time.perf_counter()
        name = call.get("method")
        if not isinstance(name, str) or not name or _NOT_FROM_REPLIES.fullmatch(name.lower()):
            return
        params = Params({k: v for k, v in call.items() if k != "method"})

        async def read() -> Params:
            return params

        _, error = await run_method(self, name, read, started)
        if error is not None:
            log.info("webhook reply: %s refused: %s", name, error.description)

    def _finish(self, hook: _Webhook, entry: _Pending) -> None:
        hook.inflight.discard(entry.update_id)
        with contextlib.suppress(ValueError):
            self._pending.remove(entry)
        record = self._updates[entry.update_id]
        if not record.dropped:
            record.confirmed_at = time.perf_counter()
        self._changed.notify()
