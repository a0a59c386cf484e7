"""The in-memory Bot API: bots, their users' private chats, updates, queries and payments.

One ``Emulator`` holds any number of bots (the benchmark runs the shop bot and an echo bot
side by side), each an ``EmulatedBot`` keyed by its id — the number before the colon of its
token. A bot has two faces:

- the *bot side* (``api_*`` methods, reached over HTTP through ``server``): what a bot can
  do, validated as Telegram validates it, refusing with ``BotApiError``;
- the *user side* (the control API: ``send_text``, ``press_button``, ``pay_invoice``, …):
  what users do, plus test knobs (faults, blocking, redelivery) and read-outs (chat views,
  callback answers, the call log).

The two faces and what tests use around them live in their own modules: ``bot_api``
(bot side), ``user_side`` (what users do), ``faults`` (fault injection), ``calllog``
(the call log and read-outs) and ``waiting`` (waiters), over the shared state in
``world``; ``EmulatedBot`` combines them.

Every mutation is synchronous and happens on the event loop, so a control call and the state
it produces are atomic with respect to the bot. Waiting is done on ``Signal``s that are
notified on each change — never by sleeping and re-checking.

Updates follow getUpdates semantics: an update stays queued until getUpdates is called with
an ``offset`` above its id. ``redeliver`` re-queues a past update with its original id; such
an update is always handed out in a batch of its own, so the client's next offset (its id +
1) confirms exactly it and nothing newer.

Webhooks (``webhook``): while one is set, updates are POSTed to it and getUpdates answers
409; the emulator delivers to loopback URLs only.

Known simplifications: private chats only (no groups, channels or inline mode);
Markdown parse modes are stored as sent, without entities or validation; callback queries
never expire.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from numbershop.emulator.bot_api import MAX_POLL_TIMEOUT, BotApiSide
from numbershop.emulator.calllog import CallLog
from numbershop.emulator.errors import BotApiError, EmulatorError, UnknownObject
from numbershop.emulator.faults import FaultInjection
from numbershop.emulator.records import CallContext
from numbershop.emulator.signals import Signal, wait_on
from numbershop.emulator.user_side import UserSide
from numbershop.emulator.waiting import Waiters
from numbershop.emulator.world import DEFAULT_UPDATE_TYPES

__all__ = [
    "DEFAULT_UPDATE_TYPES",
    "MAX_POLL_TIMEOUT",
    "CallContext",
    "EmulatedBot",
    "Emulator",
    "Signal",
    "wait_on",
]


class EmulatedBot(BotApiSide, UserSide, FaultInjection, CallLog, Waiters):
    """One bot's world on the emulator. See the module docstring for the two sides."""


class Emulator:
    """All bots served by one emulator instance; tokens are registered on first use unless
    ``auto_register=False`` (then only ``add_bot`` tokens work, others get 401)."""

    def __init__(self, *, auto_register: bool = True, now: Callable[[], float] = time.time) -> None:
        self.auto_register = auto_register
        self._now = now
        self._bots: dict[int, EmulatedBot] = {}
        self._closed = False

    def add_bot(
        self, token: str, *, username: str | None = None, first_name: str | None = None
    ) -> EmulatedBot:
        if not _valid_token(token):
            raise EmulatorError(f"not a bot token: {token!r} (expected '<digits>:<secret>')")
        bot_id = int(token.split(":", 1)[0])
        existing = self._bots.get(bot_id)
        if existing is not None:
            if existing.token != token:
                raise EmulatorError(f"bot {bot_id} is already registered with another token")
            return existing
        bot = self._bots[bot_id] = EmulatedBot(token, username=username, first_name=first_name, now=self._now)
        bot.set_closed(self._closed)
        return bot

    def bot(self, ref: str | int | None = None) -> EmulatedBot:
        """A bot by token, id, or (``None``/"default") the first one registered."""
        if ref is None or ref == "default":
            if not self._bots:
                raise UnknownObject("no bot has been registered or has called the API yet")
            return next(iter(self._bots.values()))
        if isinstance(ref, str) and ":" in ref:
            bot = self._bots.get(int(ref.split(":", 1)[0])) if _valid_token(ref) else None
            if bot is None or bot.token != ref:
                raise UnknownObject("no bot with this token")
            return bot
        try:
            return self._bots[int(ref)]
        except (KeyError, ValueError):
            raise UnknownObject(f"no bot {ref}") from None

    @property
    def bots(self) -> list[EmulatedBot]:
        return list(self._bots.values())

    def resolve_token(self, token: str) -> EmulatedBot:
        """The bot a Bot API request is for, or 401 as Telegram answers a bad token."""
        if _valid_token(token):
            bot = self._bots.get(int(token.split(":", 1)[0]))
            if bot is not None and bot.token == token:
                return bot
            if bot is None and self.auto_register:
                return self.add_bot(token)
        raise BotApiError(401, "Unauthorized")

    def close(self) -> None:
        self._set_closed(True)

    def open(self) -> None:
        self._set_closed(False)

    def _set_closed(self, closed: bool) -> None:
        self._closed = closed
        for bot in self._bots.values():
            bot.set_closed(closed)


def _valid_token(token: str) -> bool:
    head, sep, secret = token.partition(":")
    return (
        bool(sep)
        and head.isdigit()
        and 0 < len(head) < 20
        and bool(secret)
        and all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in secret)
    )
