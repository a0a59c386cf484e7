"""Telegram id → shop user, cached for the life of the process."""

from __future__ import annotations

from aiogram.types import User

from core.clock import Clock
from core.db.engine import Database
from core.users import resolve_user


class UserDirectory:
    """Telegram id → (shop user id, wallet account id), created on first sight and
    remembered in the process.

    The mapping never changes once made, so caching it is safe; ``forget`` makes the next
    update from that user go to the database again (the sender calls it after a 403 so a
    user who unblocks the bot is marked reachable again on their next message).
    """

    MAX = 200_000

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._ids: dict[int, tuple[int, int]] = {}

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
        )
        if len(self._ids) >= self.MAX:
            self._ids.clear()
        self._ids[user.id] = (row.id, row.wallet_account_id)
        return row.id

    def forget(self, telegram_id: int) -> None:
        self._ids.pop(telegram_id, None)
