"""Telegram id → shop user, cached for the life of the process."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiogram.types import User

from bot.i18n import DEFAULT_LOCALE, language_for
from core.clock import Clock
from core.db.engine import Database
from core.users import follow_client_language, resolve_user, set_language, user_language


class UserDirectory:
    """Telegram id → (shop user id, wallet account id), created on first sight and
    remembered in the process.

    The mapping never changes once made, so caching it is safe; ``forget`` makes the next
    update from that user go to the database again (the sender calls it after a 403 so a
    user who unblocks the bot is marked reachable again on their next message).
    """

    MAX = 200_000
    # A language picked on another worker is seen here within this many seconds; the worker
    # that handled /language knows it at once.
    LANGUAGE_TTL = 60.0

    def __init__(self, db: Database, clock: Clock, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.clock = clock
        self.monotonic = monotonic
        self._ids: dict[int, tuple[int, int]] = {}
        self._languages: dict[int, tuple[str | None, bool, float]] = {}

    def wallet_account(self, telegram_id: int) -> int | None:
        known = self._ids.get(telegram_id)
        return known[1] if known else None

    async def resolve(self, user: User) -> int:
        cached = self._ids.get(user.id)
        if cached is not None:
            return cached[0]
        row = await resolve_user(
            self.db,
            telegram_id=user.id,
            username=user.username,
            first_name=user.first_name,
            now=self.clock.now(),
            language=language_for(user.language_code),
        )
        if len(self._ids) >= self.MAX:
            self._ids.clear()
        self._ids[user.id] = (row.id, row.wallet_account_id)
        self._remember(user.id, row.language, row.language_chosen)
        return row.id

    def _remember(self, telegram_id: int, language: str | None, chosen: bool) -> None:
        if len(self._languages) >= self.MAX:
            self._languages.clear()
        self._languages[telegram_id] = (language, chosen, self.monotonic() + self.LANGUAGE_TTL)

    async def stored_language(self, telegram_id: int) -> tuple[str | None, bool]:
        """The language stored for a user and whether they chose it (cached for
        ``LANGUAGE_TTL``); None when nothing is stored yet."""
        hit = self._languages.get(telegram_id)
        if hit is not None and hit[2] > self.monotonic():
            return hit[0], hit[1]
        language, chosen = await user_language(self.db, telegram_id)
        self._remember(telegram_id, language, chosen)
        return language, chosen

    async def locale(self, user: User) -> str:
        """The language to speak to ``user`` in: the one picked with /language, else their
        Telegram client's (stored, so messages sent later use it too)."""
        stored, chosen = await self.stored_language(user.id)
        if chosen or not user.language_code:
            return stored or DEFAULT_LOCALE
        client = language_for(user.language_code)
        if stored is not None and stored != client:  # the client's language changed
            if not await follow_client_language(self.db, user.id, client):
                self._languages.pop(user.id, None)  # picked meanwhile elsewhere: read again
                return (await self.stored_language(user.id))[0] or client
            self._remember(user.id, client, False)
        return client

    async def recipient_locale(self, telegram_id: int) -> str:
        """The language for a message the sender delivers later (no update to read it from)."""
        return (await self.stored_language(telegram_id))[0] or DEFAULT_LOCALE

    async def choose_language(self, telegram_id: int, language: str) -> bool:
        """/language: store the choice through core and use it from the next text on."""
        changed = await set_language(self.db, telegram_id, language)
        self._remember(telegram_id, language, True)
        return changed

    def forget(self, telegram_id: int) -> None:
        self._ids.pop(telegram_id, None)
