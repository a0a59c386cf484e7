"""Shop users: one row per Telegram account, each owning exactly one wallet account.

Functions taking ``conn`` run in the caller's unit of work, so user changes commit with
whatever else that service writes. Those taking ``db`` are the services the adapters call, each
owning its transaction: ``resolve_user``, ``wallet_balance`` and ``mark_chat_unreachable`` for
the bot, and ``change_blocked`` for staff, which commits its audit row with the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement

from core import audit, ledger
from core.db.engine import insert_ignore
from core.db.tables import accounts, users
from core.errors import InvalidInput, UserNotFound

if TYPE_CHECKING:
    from core.db.engine import Database


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    telegram_id: int
    username: str | None
    first_name: str | None
    wallet_account_id: int
    blocked: bool
    unreachable: bool
    created_at: datetime
    # The language the bot speaks to this user (one of LANGUAGES); None until first seen
    # with a language. ``language_chosen``: picked with /language, so the client's language
    # no longer replaces it.
    language: str | None = None
    language_chosen: bool = False


_COLUMNS = (
    users.c.id,
    users.c.telegram_id,
    users.c.username,
    users.c.first_name,
    users.c.wallet_account_id,
    users.c.blocked,
    users.c.unreachable,
    users.c.created_at,
    users.c.language,
    users.c.language_chosen,
)


def _row(row: Any) -> UserRow:
    return UserRow(
        id=row.id,
        telegram_id=row.telegram_id,
        username=row.username,
        first_name=row.first_name,
        wallet_account_id=row.wallet_account_id,
        blocked=bool(row.blocked),
        unreachable=bool(row.unreachable),
        created_at=row.created_at,
        language=row.language,
        language_chosen=bool(row.language_chosen),
    )


def check_telegram_id(telegram_id: object) -> int:
    if not isinstance(telegram_id, int) or isinstance(telegram_id, bool) or telegram_id <= 0:
        raise InvalidInput(f"{telegram_id!r} is not a Telegram user id")
    return telegram_id


def _clip(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value[:limit] or None


# Built once: on the bot's hot paths building a statement cost as much as running it.
_BY_TELEGRAM_ID = select(*_COLUMNS).where(users.c.telegram_id == bindparam("telegram_id"))
_BY_ID = select(*_COLUMNS).where(users.c.id == bindparam("user_id"))


async def find_user(conn: AsyncConnection, telegram_id: int) -> UserRow | None:
    row = (await conn.execute(_BY_TELEGRAM_ID, {"telegram_id": telegram_id})).one_or_none()
    return None if row is None else _row(row)


async def get_user(conn: AsyncConnection, user_id: int) -> UserRow:
    row = (await conn.execute(_BY_ID, {"user_id": user_id})).one_or_none()
    if row is None:
        raise UserNotFound(f"user {user_id} does not exist")
    return _row(row)


async def get_or_create_user(
    conn: AsyncConnection,
    *,
    telegram_id: int,
    username: str | None = None,
    first_name: str | None = None,
    now: datetime,
    language: str | None = None,
) -> UserRow:
    """The user for ``telegram_id``, created with a fresh wallet if there is none yet.

    Race-safe without locks: the wallet account is opened first (``users.wallet_account_id``
    is NOT NULL), then the user row is inserted with ON CONFLICT DO NOTHING. If a concurrent
    transaction created the same user first, the insert does nothing (on PostgreSQL it waits
    for that transaction to commit; on SQLite ``BEGIN IMMEDIATE`` already serialized us), and
    the wallet we opened is deleted again in this same transaction, before anyone could see
    or reference it. Two creators therefore end with one user and one wallet, never an
    orphan account.

    A changed username or first name is stored, so staff search finds current names.
    ``language`` (the one Telegram reports, mapped to ours) is stored unless the user picked
    one with /language: a choice is never overwritten by the client's language.
    """
    check_telegram_id(telegram_id)
    language = language if language in LANGUAGES else None
    username = _clip(username.lstrip("@") if username else None, 64)
    first_name = _clip(first_name, 128)

    existing = await find_user(conn, telegram_id)
    if existing is None:
        wallet_id = await ledger.open_wallet(conn, now)
        result = await conn.execute(
            insert_ignore(conn, users).values(
                telegram_id=telegram_id,
                username=username,
                first_name=first_name,
                language=language,
                language_chosen=False,
                wallet_account_id=wallet_id,
                blocked=False,
                unreachable=False,
                created_at=now,
            )
        )
        if result.rowcount == 1:
            return await _must_find(conn, telegram_id)
        await conn.execute(delete(accounts).where(accounts.c.id == wallet_id))
        existing = await _must_find(conn, telegram_id)

    changes: dict[str, Any] = {}
    if username is not None and username != existing.username:
        changes["username"] = username
    if first_name is not None and first_name != existing.first_name:
        changes["first_name"] = first_name
    if language is not None and language != existing.language and not existing.language_chosen:
        changes["language"] = language
    if changes:
        await conn.execute(update(users).where(users.c.id == existing.id).values(**changes))
        existing = await _must_find(conn, telegram_id)
    return existing


async def _must_find(conn: AsyncConnection, telegram_id: int) -> UserRow:
    user = await find_user(conn, telegram_id)
    if user is None:  # only possible if the row vanished under us, which nothing does
        raise UserNotFound(f"no user with Telegram id {telegram_id}")
    return user


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search_users(conn: AsyncConnection, query: str, limit: int = 20) -> list[UserRow]:
    """Staff search: an exact Telegram id, or a case-insensitive username substring.

    A leading ``@`` is ignored. Exact id matches come first, then the newest users.
    """
    text = (query or "").strip().lstrip("@")
    if not text or limit <= 0:
        return []
    pattern = f"%{_escape_like(text.lower())}%"
    conditions: list[ColumnElement[bool]] = [func.lower(users.c.username).like(pattern, escape="\\")]
    exact = int(text) if text.isdigit() and len(text) <= 18 else None
    if exact is not None:
        conditions.append(users.c.telegram_id == exact)
    rank = (users.c.telegram_id == exact) if exact is not None else None
    order = [users.c.id.desc()] if rank is None else [rank.desc(), users.c.id.desc()]
    rows = (await conn.execute(select(*_COLUMNS).where(or_(*conditions)).order_by(*order).limit(limit))).all()
    return [_row(r) for r in rows]


async def set_blocked(conn: AsyncConnection, user_id: int, blocked: bool) -> UserRow:
    result = await conn.execute(update(users).where(users.c.id == user_id).values(blocked=blocked))
    if result.rowcount != 1:
        raise UserNotFound(f"user {user_id} does not exist")
    return await get_user(conn, user_id)


async def mark_unreachable(conn: AsyncConnection, telegram_id: int, unreachable: bool = True) -> bool:
    """Flag a user the bot cannot message (blocked the bot, deleted account).

    Returns False when no such user exists: the notifier may learn about a chat before the
    user row is visible, and that is not an error worth failing a send loop over.
    """
    result = await conn.execute(
        update(users).where(users.c.telegram_id == telegram_id).values(unreachable=unreachable)
    )
    return result.rowcount == 1


# --- services ---------------------------------------------------------------------------

# The languages the shop speaks (gettext locale names). The bot owns the texts; core only
# guards what is stored, so a bad value can never reach the column.
LANGUAGES = ("en", "ru", "es", "pt_BR", "id")


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise InvalidInput(f"{language!r} is not a supported language")
    return language


async def set_language(db: Database, telegram_id: int, language: str) -> bool:
    """The user picked a language (/language): stored and marked chosen. False when there is
    no such user; an unsupported language is bad input and nothing is written.

    Idempotent: setting the same language again changes nothing visible."""
    check_telegram_id(telegram_id)
    _check_language(language)
    async with db.begin() as conn:
        result = await conn.execute(
            update(users)
            .where(users.c.telegram_id == telegram_id)
            .values(language=language, language_chosen=True)
        )
    return result.rowcount == 1


async def follow_client_language(db: Database, telegram_id: int, language: str) -> bool:
    """The user's Telegram client now reports another language: store it, unless the user
    picked one with /language (checked in the same UPDATE, so a pick made at the same moment
    always wins). True when something changed."""
    check_telegram_id(telegram_id)
    _check_language(language)
    async with db.begin() as conn:
        result = await conn.execute(
            update(users)
            .where(
                users.c.telegram_id == telegram_id,
                users.c.language_chosen.is_(False),
                or_(users.c.language.is_(None), users.c.language != language),
            )
            .values(language=language)
        )
    return result.rowcount == 1


async def user_language(db: Database, telegram_id: int) -> tuple[str | None, bool]:
    """The stored language of a user (None when unknown or none yet) and whether the user
    chose it; the sender renders a queued message in that language."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(users.c.language, users.c.language_chosen).where(users.c.telegram_id == telegram_id)
            )
        ).one_or_none()
    if row is None or row.language not in LANGUAGES:
        return None, False
    return row.language, bool(row.language_chosen)


async def resolve_user(
    db: Database,
    *,
    telegram_id: int,
    username: str | None,
    first_name: str | None,
    now: datetime,
    language: str | None = None,
) -> UserRow:
    """The user behind a Telegram update, created on first sight. Someone who writes to the
    bot can be messaged again, so a user marked unreachable is marked reachable."""
    async with db.begin() as conn:
        row = await get_or_create_user(
            conn,
            telegram_id=telegram_id,
            username=username,
            first_name=first_name,
            now=now,
            language=language,
        )
        if row.unreachable:
            await mark_unreachable(conn, telegram_id, False)
    return row


async def wallet_balance(db: Database, wallet_account_id: int) -> ledger.AccountBalance:
    """Balance, held and available of a user's wallet, by its account id (one query: the bot
    knows the account of a user it has seen)."""
    async with db.read() as conn:
        return await ledger.balance_of(conn, wallet_account_id)


async def mark_chat_unreachable(db: Database, telegram_id: int) -> bool:
    """``mark_unreachable`` in its own transaction (the sender learnt of a 403)."""
    async with db.begin() as conn:
        return await mark_unreachable(conn, telegram_id)


async def change_blocked(
    db: Database, telegram_id: int, blocked: bool, *, actor: str, reason: str, now: datetime
) -> bool:
    """Staff block or unblock a user: the flag and its audit row commit together.

    False, with nothing written, when the user already was in that state."""
    async with db.begin() as conn:
        user = await find_user(conn, telegram_id)
        if user is None:
            raise UserNotFound(f"no user with Telegram id {telegram_id}")
        if user.blocked == blocked:
            return False
        await set_blocked(conn, user.id, blocked)
        await audit.record(
            conn,
            actor=actor,
            action="user.block" if blocked else "user.unblock",
            target_type="user",
            target_id=user.id,
            reason=reason,
            detail={"telegram_id": telegram_id},
            now=now,
        )
    return True
