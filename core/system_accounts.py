"""The shop's own accounts (revenue, top-ups, adjustments, crypto top-ups, marketing) and the
shards the busy ones are split into, with the per-database cache of their ids. The ledger
books against these; kept apart so the sharding scheme is read in one place."""

from __future__ import annotations

import zlib
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.engine import insert_ignore
from core.db.tables import accounts
from core.errors import NotFound

REVENUE = "revenue"
TOPUPS = "topups"
ADJUSTMENTS = "adjustments"
# Crypto Pay top-ups come in through their own account, so the books can compare what it
# paid out with the paid crypto invoices (core.cryptopay_books).
CRYPTOPAY = "cryptopay"
# What the shop gives away on purpose (promo codes, referral rewards) is paid from here, so
# its balance is the programmes' cost and never mixes with staff adjustments.
MARKETING = "marketing"
SYSTEM_ACCOUNTS = (REVENUE, TOPUPS, ADJUSTMENTS, CRYPTOPAY, MARKETING)

# --- system accounts, some in shards -------------------------------------------------------
# Revenue and top-ups take a move from every purchase, capture, refund and top-up. On
# PostgreSQL one row for each made every one of those transactions queue for that row's lock,
# held to the commit; a holder waiting for its turn of a busy event loop held everyone else
# (bench.bot: 17 transactions waiting at once, p99 1.4 s). So each is SHARDS rows of one kind:
# the first keeps the plain code ("revenue"), the others "revenue#1" … "revenue#15". A
# transfer picks a shard from a key of its own (the order id, the payment), so the moves of
# one order land on one row and different orders rarely meet. A system account's balance is
# the sum over its shards; shards carry no rule of their own, as system accounts never did.
SHARDS = 16
SHARDED = (REVENUE, TOPUPS)

_system_ids: dict[str, dict[str, tuple[int, ...]]] = {}  # database URL → code → shard ids


def shard_codes(code: str) -> list[str]:
    """The codes of a system account's rows, the plain code first."""
    if code not in SHARDED:
        return [code]
    return [code] + [f"{code}#{i}" for i in range(1, SHARDS)]


def forget_system_accounts() -> None:
    """Drop the cached system account ids (they are cached per database URL); for tools and
    tests that make a new database under a URL already used in this process."""
    _system_ids.clear()


def system_rows() -> list[tuple[str, str]]:
    """(kind, code) of every system account row, shards included."""
    return [(code, shard) for code in SYSTEM_ACCOUNTS for shard in shard_codes(code)]


async def ensure_system_accounts(conn: AsyncConnection, now: datetime) -> None:
    """Create the system accounts and their shards; idempotent, run on every upgrade and
    start, so a database made before sharding gets its shards then."""
    await conn.execute(
        insert_ignore(conn, accounts),
        [
            dict(
                kind=kind,
                code=code,
                debits_must_not_exceed_credits=False,
                debits_posted=0,
                credits_posted=0,
                debits_pending=0,
                credits_pending=0,
                created_at=now,
            )
            for kind, code in system_rows()
        ],
    )
    _system_ids.pop(str(conn.engine.url), None)


async def system_account_ids(conn: AsyncConnection, code: str) -> tuple[int, ...]:
    """Ids of a system account's rows (its shards), the plain code's first; cached per
    database URL since system accounts never change. Looked up by code, the unique index."""
    known = _system_ids.setdefault(str(conn.engine.url), {})
    if code not in known:
        codes = shard_codes(code)
        found = dict(
            (
                await conn.execute(select(accounts.c.code, accounts.c.id).where(accounts.c.code.in_(codes)))
            ).all()
        )
        if code not in found:
            raise NotFound(f"system account {code!r} is missing; run `numbershop db upgrade`")
        known[code] = tuple(found[c] for c in codes if c in found)
    return known[code]


async def system_account(conn: AsyncConnection, code: str, spread: str | None = None) -> int:
    """Id of the system account row a transfer should use: the shard that ``spread`` (an
    order id, a payment) picks, or the plain one without it."""
    ids = await system_account_ids(conn, code)
    if spread is None or len(ids) == 1:
        return ids[0]
    return ids[zlib.crc32(spread.encode()) % len(ids)]
