"""Staff accounts: who may run the shop from the dashboard, with which role.

Passwords are hashed with argon2id (argon2-cffi). Hashing is deliberately slow, so it runs in
a worker thread and never blocks the event loop that also serves the dashboard. A login for an
unknown username still verifies against a dummy hash, so response time does not tell an
attacker which usernames exist.

API tokens are random strings shown once; only their SHA-256 is stored (a token has enough
entropy that a slow hash adds nothing, and a fast one lets every API request check it).

Roles are ordered: ``viewer`` reads, ``support`` also credits/debits wallets and cancels
orders, ``admin`` also refunds completed orders, blocks users, manages staff and prices.
Every change made here writes an audit row in the same transaction.

Staff-typed text that is kept (reasons, which become audit reasons and transfer memos; token
names) goes through :func:`check_free_text`: NUL (which PostgreSQL refuses in text) and other
control characters, and the Unicode bidi controls that make a log line read differently from
what it holds, are refused with a sentence instead of stored or turned into a 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit
from core.clock import Clock
from core.db.engine import Database, insert_ignore
from core.db.tables import api_tokens, staff
from core.errors import InvalidInput, NotFound, ShopError
from core.money import format_amount
from core.wallets import WalletChange, Wallets

ROLES = ("viewer", "support", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}
_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD_LENGTH = 8
TOKEN_PREFIX = "nsk_"


class StaffNotFound(NotFound):
    pass


class NotAllowed(ShopError):
    """The staff member's role does not allow this action (shown as a 403)."""


class SelfChangeRefused(NotAllowed):
    """A staff member tried to disable or demote themselves.

    Another admin must do it: one slip of the hand must not lock the person making it out
    of the dashboard (the last-admin check alone would not stop an admin among several).
    """


# Bidi embeddings/overrides/isolates, LRM/RLM and the Arabic letter mark: they reorder how a
# line is displayed, so an audit reason could read differently from what it says.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def check_free_text(text: str, field: str = "the text") -> str:
    """Refuse NUL, other control characters and bidi controls in staff-typed text."""
    for ch in text:
        if ch in _BIDI:
            raise InvalidInput(f"{field} contains an invisible direction-control character (U+{ord(ch):04X})")
        if (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F) and ch not in _ALLOWED_CONTROLS:
            raise InvalidInput(f"{field} contains a control character (U+{ord(ch):04X})")
    return text


def check_reason(reason: str, *, max_length: int = 500) -> str:
    """A staff reason for the audit log: 3 to ``max_length`` characters of plain text."""
    reason = " ".join(check_free_text(reason or "", "the reason").split())
    if len(reason) < 3:
        raise InvalidInput("a reason is required (at least 3 characters): it goes into the audit log")
    if len(reason) > max_length:
        raise InvalidInput(f"the reason is longer than {max_length} characters")
    return reason


def check_role(role: str) -> str:
    role = (role or "").strip().lower()
    if role not in _RANK:
        raise InvalidInput(f"unknown role {role!r}; choose from {', '.join(ROLES)}")
    return role


def role_allows(role: str, required: str) -> bool:
    """True when ``role`` is at least ``required`` (viewer < support < admin)."""
    return role in _RANK and _RANK[role] >= _RANK[required]


def check_username(username: str) -> str:
    username = (username or "").strip()
    if not _USERNAME_RE.match(username):
        raise InvalidInput(
            "a staff username is 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return username


def check_password(password: str) -> str:
    if not password or not password.strip():
        raise InvalidInput("the password is empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise InvalidInput("the password is longer than 1024 characters")
    return password


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StaffMember:
    id: int
    username: str
    role: str
    disabled: bool
    created_at: datetime
    # A short digest of the password hash: sessions remember it, so changing the password
    # ends every session opened with the old one.
    password_epoch: str

    @property
    def actor(self) -> str:
        return f"staff:{self.username}"

    def allows(self, required: str) -> bool:
        return not self.disabled and role_allows(self.role, required)


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    staff_id: int
    name: str | None
    created_at: datetime
    last_used_at: datetime | None


def _member(row: RowMapping) -> StaffMember:
    return StaffMember(
        id=row["id"],
        username=row["username"],
        role=row["role"],
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
        password_epoch=hashlib.sha256(row["password_hash"].encode()).hexdigest()[:16],
    )


async def _audit(
    conn: AsyncConnection,
    *,
    actor: str,
    action: str,
    target: str,
    reason: str | None,
    detail: dict[str, object] | None,
    now: datetime,
) -> None:
    await audit.record(
        conn,
        actor=actor,
        action=action,
        target_type="staff",
        target_id=target,
        reason=reason,
        detail=detail,
        now=now,
    )


class StaffAccounts:
    """Create staff, check their passwords and tokens, change roles; audited."""

    def __init__(self, db: Database, clock: Clock, hasher: PasswordHasher | None = None) -> None:
        self.db = db
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self.hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(verify)

    # --- reads -------------------------------------------------------------------------

    async def get(self, staff_id: int) -> StaffMember | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(staff).where(staff.c.id == staff_id))).mappings().first()
        return _member(row) if row else None

    async def find(self, username: str) -> StaffMember | None:
        async with self.db.read() as conn:
            row = (
                (await conn.execute(select(staff).where(staff.c.username == username.strip())))
                .mappings()
                .first()
            )
        return _member(row) if row else None

    async def members(self) -> list[StaffMember]:
        async with self.db.read() as conn:
            rows = (await conn.execute(select(staff).order_by(staff.c.username))).mappings().all()
        return [_member(r) for r in rows]

    async def count(self) -> int:
        async with self.db.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(staff)) or 0)

    async def tokens(self, staff_id: int) -> list[ApiToken]:
        async with self.db.read() as conn:
            rows = (
                (
                    await conn.execute(
                        select(api_tokens).where(api_tokens.c.staff_id == staff_id).order_by(api_tokens.c.id)
                    )
                )
                .mappings()
                .all()
            )
        return [ApiToken(r["id"], r["staff_id"], r["name"], r["created_at"], r["last_used_at"]) for r in rows]

    # --- changes -----------------------------------------------------------------------

    async def create(
        self,
        username: str,
        role: str,
        password: str,
        *,
        actor: str = "cli",
    ) -> StaffMember:
        username, role, password = check_username(username), check_role(role), check_password(password)
        password_hash = await self._hash(password)  # outside the transaction: it is slow
        now = self.clock.now()
        async with self.db.begin() as conn:
            result = await conn.execute(
                insert_ignore(conn, staff).values(
                    username=username,
                    password_hash=password_hash,
                    role=role,
                    disabled=False,
                    created_at=now,
                )
            )
            if result.rowcount != 1:
                raise InvalidInput(f"staff member {username!r} already exists")
            row = (await conn.execute(select(staff).where(staff.c.username == username))).mappings().one()
            await _audit(
                conn,
                actor=actor,
                action="staff.create",
                target=username,
                reason=None,
                detail={"role": role},
                now=now,
            )
        return _member(row)

    async def set_password(self, username: str, password: str, *, actor: str = "cli") -> StaffMember:
        password = check_password(password)
        password_hash = await self._hash(password)
        now = self.clock.now()
        async with self.db.begin() as conn:
            result = await conn.execute(
                update(staff).where(staff.c.username == username).values(password_hash=password_hash)
            )
            if result.rowcount != 1:
                raise StaffNotFound(f"no staff member {username!r}")
            row = (await conn.execute(select(staff).where(staff.c.username == username))).mappings().one()
            await _audit(
                conn, actor=actor, action="staff.password", target=username, reason=None, detail=None, now=now
            )
        return _member(row)

    async def set_role(
        self, username: str, role: str, *, actor: str, acting_id: int | None = None
    ) -> StaffMember:
        """``acting_id`` is the staff member making the change (None: the operator's CLI)."""
        role = check_role(role)
        return await self._change(username, {"role": role}, "staff.role", actor, {"role": role}, acting_id)

    async def set_disabled(
        self, username: str, disabled: bool, *, actor: str, acting_id: int | None = None
    ) -> StaffMember:
        action = "staff.disable" if disabled else "staff.enable"
        return await self._change(username, {"disabled": disabled}, action, actor, None, acting_id)

    async def _change(
        self,
        username: str,
        values: dict[str, object],
        action: str,
        actor: str,
        detail: dict[str, object] | None,
        acting_id: int | None = None,
    ) -> StaffMember:
        now = self.clock.now()
        async with self.db.begin() as conn:
            before = (
                (await conn.execute(select(staff).where(staff.c.username == username))).mappings().first()
            )
            if before is None:
                raise StaffNotFound(f"no staff member {username!r}")
            if (values.get("role", "admin") != "admin" or values.get("disabled")) and before[
                "role"
            ] == "admin":
                # Never leave the shop without an enabled admin to undo the change.
                admins = await conn.scalar(
                    select(func.count())
                    .select_from(staff)
                    .where(staff.c.role == "admin", staff.c.disabled.is_(False), staff.c.id != before["id"])
                )
                if not admins:
                    raise InvalidInput("this is the last enabled admin; add another admin first")
            # Checked after the last-admin rule, whose message says what to do first.
            if acting_id is not None and before["id"] == acting_id:
                if values.get("disabled"):
                    raise SelfChangeRefused("you cannot disable your own account; ask another admin")
                role = values.get("role")
                if isinstance(role, str) and _RANK[role] < _RANK[before["role"]]:
                    raise SelfChangeRefused("you cannot lower your own role; ask another admin")
            await conn.execute(update(staff).where(staff.c.id == before["id"]).values(**values))
            row = (await conn.execute(select(staff).where(staff.c.id == before["id"]))).mappings().one()
            if any(before[k] != row[k] for k in values):
                await _audit(
                    conn, actor=actor, action=action, target=username, reason=None, detail=detail, now=now
                )
        return _member(row)

    # --- authentication ----------------------------------------------------------------

    async def authenticate(self, username: str, password: str) -> StaffMember | None:
        """The staff member if the password is right and the account enabled, else None."""
        username = (username or "").strip()
        row = None
        if _USERNAME_RE.match(username):  # anything else names nobody (and NUL would upset PostgreSQL)
            async with self.db.read() as conn:
                found = await conn.execute(select(staff).where(staff.c.username == username))
                row = found.mappings().first()
        if row is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self._hash(secrets.token_hex(16))
            await self._verify(self._dummy_hash, password or "")
            return None
        if not await self._verify(row["password_hash"], password or ""):
            return None
        if row["disabled"]:
            return None
        if self.hasher.check_needs_rehash(row["password_hash"]):
            new_hash = await self._hash(password)
            async with self.db.begin() as conn:
                await conn.execute(
                    update(staff)
                    .where(staff.c.id == row["id"], staff.c.password_hash == row["password_hash"])
                    .values(password_hash=new_hash)
                )
            return await self.get(row["id"])
        return _member(row)

    async def create_token(self, username: str, name: str | None = None, *, actor: str = "cli") -> str:
        """A new API token for ``username``; the plain token is returned once, never stored."""
        if name is not None:
            check_free_text(name, "the token name")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now()
        async with self.db.begin() as conn:
            staff_id = await conn.scalar(select(staff.c.id).where(staff.c.username == username))
            if staff_id is None:
                raise StaffNotFound(f"no staff member {username!r}")
            await conn.execute(
                api_tokens.insert().values(
                    staff_id=staff_id,
                    token_hash=hash_token(token),
                    name=(name or None),
                    created_at=now,
                )
            )
            await _audit(
                conn,
                actor=actor,
                action="staff.token_create",
                target=username,
                reason=None,
                detail={"name": name},
                now=now,
            )
        return token

    async def revoke_token(self, token_id: int, *, actor: str) -> None:
        now = self.clock.now()
        async with self.db.begin() as conn:
            row = (
                await conn.execute(
                    select(api_tokens.c.id, staff.c.username)
                    .join(staff, staff.c.id == api_tokens.c.staff_id)
                    .where(api_tokens.c.id == token_id)
                )
            ).first()
            if row is None:
                raise NotFound(f"no API token {token_id}")
            await conn.execute(api_tokens.delete().where(api_tokens.c.id == token_id))
            await _audit(
                conn,
                actor=actor,
                action="staff.token_revoke",
                target=row.username,
                reason=None,
                detail={"token_id": token_id},
                now=now,
            )

    async def authenticate_token(self, token: str) -> StaffMember | None:
        if not token or not token.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(token)
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        select(staff, api_tokens.c.id.label("token_id"), api_tokens.c.last_used_at)
                        .join(api_tokens, api_tokens.c.staff_id == staff.c.id)
                        .where(api_tokens.c.token_hash == digest)
                    )
                )
                .mappings()
                .first()
            )
        if row is None or row["disabled"]:
            return None
        now = self.clock.now()
        last = row["last_used_at"]
        if last is None or (now - last).total_seconds() > 60:
            # Cheap bookkeeping, at most once a minute per token, so reads stay reads.
            async with self.db.begin() as conn:
                await conn.execute(
                    update(api_tokens).where(api_tokens.c.id == row["token_id"]).values(last_used_at=now)
                )
        return _member(row)


async def adjust_wallet(
    wallets: Wallets,
    member: StaffMember,
    direction: str,
    telegram_id: int,
    amount: int,
    *,
    reason: str,
    idempotency_key: str | None,
    support_credit_limit: int,
) -> WalletChange:
    """A staff member credits or debits a wallet, within what their role allows.

    Support staff may credit at most ``support_credit_limit`` minor units in one action
    (``SUPPORT_CREDIT_LIMIT``); a larger grant needs an admin. Checked here, in front of the
    ledger, so the dashboard's pages and its API apply the same rule. (The command line acts as
    the operator, not as a staff member, and calls ``Wallets`` directly.)
    """
    if direction not in ("credit", "debit"):
        raise InvalidInput(f"unknown direction {direction!r}")
    if not member.allows("support"):
        raise NotAllowed(f"changing a wallet needs the support role; you are {member.role}")
    reason = check_reason(reason)
    if direction == "credit" and not member.allows("admin") and amount > support_credit_limit:
        raise NotAllowed(
            f"support staff may credit at most {format_amount(support_credit_limit, wallets.currency)} "
            f"at once; ask an admin for {format_amount(amount, wallets.currency)}"
        )
    move = wallets.credit if direction == "credit" else wallets.debit
    # The buyer hears about it from the outbox row committed with the movement.
    return await move(
        telegram_id, amount, reason=reason, idempotency_key=idempotency_key, actor=member.actor, notify=True
    )
