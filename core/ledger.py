"""Double-entry ledger with two-phase transfers (TigerBeetle's model).

Invariants this module keeps, each by construction rather than by a later check:

* Transfers are immutable and keyed by a client-generated id. Re-submitting the same id with
  the same content returns the first result (``created=False``); different content raises
  ``TransferConflict``.
* A wallet's ``debits_posted + debits_pending <= credits_posted`` is enforced *inside* the
  UPDATE that applies the amount, so two concurrent holds can never both pass a stale check.
* A pending transfer (hold) is resolved at most once: a resolution row carries the pending id
  under a UNIQUE constraint, and the account columns move only after that row is inserted.
* Account rows are always updated in descending id order (wallets, created after the system
  accounts, come first), so concurrent transfers cannot deadlock on PostgreSQL.

Every function takes an open connection: the caller's unit of work owns the transaction, so a
hold, its order row, the order event and the outbox row commit together or not at all.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.engine import at_commit, insert_ignore
from core.db.tables import accounts, transfers
from core.errors import HoldAlreadyResolved, InsufficientFunds, NotFound, TransferConflict

# Re-exported: callers book against ledger.REVENUE, ledger.system_account(...) and the like.
from core.system_accounts import ADJUSTMENTS as ADJUSTMENTS
from core.system_accounts import REVENUE as REVENUE
from core.system_accounts import SHARDS as SHARDS
from core.system_accounts import SYSTEM_ACCOUNTS as SYSTEM_ACCOUNTS
from core.system_accounts import TOPUPS as TOPUPS
from core.system_accounts import _system_ids
from core.system_accounts import ensure_system_accounts as ensure_system_accounts
from core.system_accounts import forget_system_accounts as forget_system_accounts
from core.system_accounts import system_account as system_account
from core.system_accounts import system_account_ids as system_account_ids
from core.system_accounts import system_rows as system_rows


class TransferKind(enum.StrEnum):
    """What a transfer row is: a single-phase posting, a hold, or a hold's resolution
    (capture or void).

    The stored values are the ledger's first words for them, kept on purpose: a resolution's
    id is ``derived_id(hold_id, kind)``, so renaming the stored value would give a retried
    capture or void of an old hold a new id and turn an idempotent retry into a conflict."""

    POSTED = "posted"
    HOLD = "pending"
    CAPTURE = "post_pending"
    VOID = "void_pending"


RESOLUTIONS = (TransferKind.CAPTURE, TransferKind.VOID)

_NS = uuid.UUID("6f1d6a52-8c4e-4c39-9a53-1f3c2b6f0e11")


def derived_id(*parts: object) -> str:
    """A stable transfer id from an idempotency key: same key, same id, forever."""
    return str(uuid.uuid5(_NS, ":".join(str(p) for p in parts)))


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class TransferResult:
    id: str
    created: bool  # False: this exact transfer already existed ("exists")
    amount: int


@dataclass(frozen=True, slots=True)
class AccountBalance:
    account_id: int
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def balance(self) -> int:
        return self.credits_posted - self.debits_posted

    @property
    def held(self) -> int:
        return self.debits_pending

    @property
    def available(self) -> int:
        return self.balance - self.held


async def open_wallet(conn: AsyncConnection, now: datetime) -> int:
    result = await conn.execute(
        accounts.insert(),
        {
            "kind": "wallet",
            "code": None,
            "debits_must_not_exceed_credits": True,
            "debits_posted": 0,
            "credits_posted": 0,
            "debits_pending": 0,
            "credits_pending": 0,
            "created_at": now,
        },
    )
    key = result.inserted_primary_key
    assert key is not None  # None only for an executemany; this INSERT is one row
    return int(key[0])


_BALANCE = select(
    accounts.c.debits_posted,
    accounts.c.credits_posted,
    accounts.c.debits_pending,
    accounts.c.credits_pending,
).where(accounts.c.id == bindparam("account_id"))  # built once: read on nearly every screen


async def balance_of(conn: AsyncConnection, account_id: int) -> AccountBalance:
    row = (await conn.execute(_BALANCE, {"account_id": account_id})).one_or_none()
    if row is None:
        raise NotFound(f"account {account_id} does not exist")
    return AccountBalance(account_id, *row)


async def _insert_transfer(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert the row; False if this id (same content) already exists. Raises on conflicts."""
    result = await conn.execute(insert_ignore(conn, transfers), values)
    if result.rowcount == 1:
        return True
    existing = (
        (await conn.execute(select(transfers).where(transfers.c.id == values["id"]))).mappings().one_or_none()
    )
    if existing is None:
        # Not our id: the UNIQUE(pending_id) constraint refused a second resolution.
        raise HoldAlreadyResolved(f"hold {values.get('pending_id')} is already resolved")
    for field in (
        "kind",
        "debit_account_id",
        "credit_account_id",
        "amount",
        "pending_id",
        "code",
        "order_id",
    ):
        if existing[field] != values.get(field):
            raise TransferConflict(f"transfer {values['id']} exists with a different {field}")
    return False


_a = accounts.c
# Built once: the hot path only binds parameters.
_DEBIT = {
    pending: update(accounts)
    .where(
        _a.id == bindparam("acc"),
        (_a.debits_must_not_exceed_credits.is_(False))
        | (_a.debits_posted + _a.debits_pending + bindparam("amt") <= _a.credits_posted),
    )
    .values({col: col + bindparam("amt")})
    for pending, col in ((True, _a.debits_pending), (False, _a.debits_posted))
}
_CREDIT = {
    pending: update(accounts).where(_a.id == bindparam("acc")).values({col: col + bindparam("amt")})
    for pending, col in ((True, _a.credits_pending), (False, _a.credits_posted))
}
# One statement moves any mix of amounts on one account (resolutions, batch captures,
# system accounts at commit); unmoved columns are bound to 0.
_MOVE_KEYS = ("d_pending", "d_posted", "c_pending", "c_posted")
_MOVE = (
    update(accounts)
    .where(_a.id == bindparam("acc"))
    .values(
        {
            _a.debits_pending: _a.debits_pending + bindparam("d_pending"),
            _a.debits_posted: _a.debits_posted + bindparam("d_posted"),
            _a.credits_pending: _a.credits_pending + bindparam("c_pending"),
            _a.credits_posted: _a.credits_posted + bindparam("c_posted"),
        }
    )
)
# (kind, side) → the pending column the amount leaves, and the posted one it enters (capture).
_RESOLVE = {
    (TransferKind.CAPTURE, "debit"): ("d_pending", "d_posted"),
    (TransferKind.CAPTURE, "credit"): ("c_pending", "c_posted"),
    (TransferKind.VOID, "debit"): ("d_pending", None),
    (TransferKind.VOID, "credit"): ("c_pending", None),
}
_PENDING_BY_ID = select(transfers).where(transfers.c.id == bindparam("tid"))


# --- system accounts move last ----------------------------------------------------------
# Every purchase, capture and top-up also moves a shared system account (revenue, topups).
# On PostgreSQL its row stays locked from that UPDATE to the commit, so updated where the
# transfer happens it serialized every purchase behind the others' remaining statements
# (under a burst of Buy taps: seconds). System accounts have no balance rule to check and
# nothing reads them inside a transaction, so their moves are summed and applied as the
# transaction's last statement (``at_commit``), in the same descending-id lock order as
# every transfer: the lock is held for one statement. Outside ``Database.begin()`` (nothing
# to flush them) they apply at once, as do moves on any other account.


class _SystemMoves:
    def __init__(self) -> None:
        self.moves: dict[int, dict[str, int]] = {}

    async def flush(self, conn: AsyncConnection) -> None:
        rows = [
            dict(acc=acc, **move)
            for acc, move in sorted(self.moves.items(), reverse=True)
            if any(move.values())
        ]
        if rows:
            await conn.execute(_MOVE, rows)


def _deferred(conn: AsyncConnection, account_id: int, deltas: dict[str, int]) -> bool:
    """Queue a move of a system account for the end of the transaction; False when the
    caller must apply it now."""
    if not any(account_id in ids for ids in _system_ids.get(str(conn.engine.url), {}).values()):
        return False
    later = at_commit(conn, "ledger.system_moves", _SystemMoves)
    if later is None:
        return False
    move = later.moves.setdefault(account_id, dict.fromkeys(_MOVE_KEYS, 0))
    for key, delta in deltas.items():
        move[key] += delta
    return True


async def _resolve_move(
    conn: AsyncConnection, kind: TransferKind, side: str, account_id: int, amount: int
) -> None:
    """Move a resolved hold's amount out of pending (and into posted on a capture)."""
    leaves, enters = _RESOLVE[(kind, side)]
    deltas = dict.fromkeys(_MOVE_KEYS, 0)
    deltas[leaves] = -amount
    if enters:
        deltas[enters] = amount
    if not _deferred(conn, account_id, deltas):
        await conn.execute(_MOVE, {"acc": account_id, **deltas})


async def _debit(conn: AsyncConnection, account_id: int, amount: int, *, pending: bool) -> None:
    """Apply a debit under the account's own rule, in one guarded UPDATE."""
    if _deferred(conn, account_id, {"d_pending" if pending else "d_posted": amount}):
        return  # a system account: no rule to check
    result = await conn.execute(_DEBIT[pending], {"acc": account_id, "amt": amount})
    if result.rowcount != 1:
        bal = await balance_of(conn, account_id)  # raises NotFound for a missing account
        raise InsufficientFunds(missing=amount - bal.available, available=bal.available)


async def _credit(conn: AsyncConnection, account_id: int, amount: int, *, pending: bool) -> None:
    if _deferred(conn, account_id, {"c_pending" if pending else "c_posted": amount}):
        return
    result = await conn.execute(_CREDIT[pending], {"acc": account_id, "amt": amount})
    if result.rowcount != 1:
        raise NotFound(f"account {account_id} does not exist")


async def _apply(
    conn: AsyncConnection, transfer_id: str, debit: int, credit: int, amount: int, *, pending: bool
) -> None:
    """Move the amount on both accounts, or, on InsufficientFunds, leave no trace at all.

    The transfer row was inserted first (that is what makes retries idempotent), so a refused
    debit must take it out again, and undo the credit when the lock order applied it first:
    a caller that catches InsufficientFunds and commits must not commit half a transfer.
    """
    try:
        if debit > credit:
            await _debit(conn, debit, amount, pending=pending)
            await _credit(conn, credit, amount, pending=pending)
        else:
            await _credit(conn, credit, amount, pending=pending)
            try:
                await _debit(conn, debit, amount, pending=pending)
            except InsufficientFunds:
                await _credit(conn, credit, -amount, pending=pending)
                raise
    except InsufficientFunds:
        await conn.execute(delete(transfers).where(transfers.c.id == transfer_id))
        raise


async def post_transfer(
    conn: AsyncConnection,
    *,
    id: str,
    debit: int,
    credit: int,
    amount: int,
    code: str,
    now: datetime,
    order_id: str | None = None,
    reference: str | None = None,
    memo: str | None = None,
) -> TransferResult:
    """A single-phase transfer (top-up, adjustment, staff refund)."""
    _check_amount(amount)
    created = await _insert_transfer(
        conn,
        dict(
            id=id,
            kind=TransferKind.POSTED,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            pending_id=None,
            timeout_at=None,
            code=code,
            order_id=order_id,
            reference=reference,
            memo=memo,
            created_at=now,
        ),
    )
    if created:
        await _apply(conn, id, debit, credit, amount, pending=False)
    return TransferResult(id, created, amount)


async def create_hold(
    conn: AsyncConnection,
    *,
    id: str,
    debit: int,
    credit: int,
    amount: int,
    timeout_at: datetime,
    now: datetime,
    code: str = "purchase",
    order_id: str | None = None,
) -> TransferResult:
    """Phase one of a two-phase transfer: reserve ``amount`` on the debit account."""
    _check_amount(amount)
    created = await _insert_transfer(
        conn,
        dict(
            id=id,
            kind=TransferKind.HOLD,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            pending_id=None,
            timeout_at=timeout_at,
            code=code,
            order_id=order_id,
            reference=None,
            memo=None,
            created_at=now,
        ),
    )
    if created:
        await _apply(conn, id, debit, credit, amount, pending=True)
    return TransferResult(id, created, amount)


_t = transfers.c
_RESOLUTION_COLUMNS = [
    "id",
    "kind",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "pending_id",
    "code",
    "order_id",
    "created_at",
]
_RESOLVE_INSERT: dict[str, Any] = {}


def _resolve_insert(conn: AsyncConnection) -> Any:
    """INSERT the resolution row copied from its pending transfer in one statement.

    ``ON CONFLICT DO NOTHING`` covers both a retry (same id) and a second resolution
    (UNIQUE pending_id); RETURNING tells us whether we inserted and what to move.
    """
    dialect = conn.dialect.name
    if dialect not in _RESOLVE_INSERT:
        source = select(
            bindparam("res_id"),
            bindparam("kind"),
            _t.debit_account_id,
            _t.credit_account_id,
            _t.amount,
            _t.id,
            bindparam("code"),
            _t.order_id,
            bindparam("now", type_=_t.created_at.type),
        ).where(_t.id == bindparam("pending_id"), _t.kind == TransferKind.HOLD)
        _RESOLVE_INSERT[dialect] = (
            insert_ignore(conn, transfers)
            .from_select(_RESOLUTION_COLUMNS, source)
            .returning(_t.debit_account_id, _t.credit_account_id, _t.amount)
        )
    return _RESOLVE_INSERT[dialect]


async def _resolve(
    conn: AsyncConnection, pending_id: str, kind: TransferKind, code: str, now: datetime
) -> TransferResult:
    res_id = derived_id(pending_id, kind)
    row = (
        await conn.execute(
            _resolve_insert(conn),
            {
                "res_id": res_id,
                "kind": kind,
                "code": code,
                "now": now,
                "pending_id": pending_id,
            },
        )
    ).one_or_none()
    if row is None:
        return await _resolve_existing(conn, pending_id, res_id, kind, code, now)
    debit, credit, amount = row
    for account_id, side in sorted(
        ((debit, "debit"), (credit, "credit")), key=lambda step: -step[0]
    ):  # same lock order as _apply
        await _resolve_move(conn, kind, side, account_id, amount)
    return TransferResult(res_id, True, amount)


async def _resolve_existing(
    conn: AsyncConnection, pending_id: str, res_id: str, kind: TransferKind, code: str, now: datetime
) -> TransferResult:
    """Nothing was inserted: explain why (retry, other resolution, or no such hold)."""
    pending = (await conn.execute(_PENDING_BY_ID, {"tid": pending_id})).mappings().one_or_none()
    if pending is None or pending["kind"] != TransferKind.HOLD:
        raise NotFound(f"no pending transfer {pending_id}")
    created = await _insert_transfer(
        conn,
        dict(
            id=res_id,
            kind=kind,
            debit_account_id=pending["debit_account_id"],
            credit_account_id=pending["credit_account_id"],
            amount=pending["amount"],
            pending_id=pending_id,
            timeout_at=None,
            code=code,
            order_id=pending["order_id"],
            reference=None,
            memo=None,
            created_at=now,
        ),
    )
    if created:  # not expected (the first insert would have taken it), but never half-apply
        for account_id, side in sorted(
            ((pending["debit_account_id"], "debit"), (pending["credit_account_id"], "credit")),
            key=lambda step: -step[0],
        ):
            await _resolve_move(conn, kind, side, account_id, pending["amount"])
    return TransferResult(res_id, created, pending["amount"])


async def capture_hold(conn: AsyncConnection, pending_id: str, now: datetime) -> TransferResult:
    """Capture: the held amount becomes posted. Idempotent; raises if the hold was voided."""
    return await _resolve(conn, pending_id, TransferKind.CAPTURE, "capture", now)


async def void_hold(conn: AsyncConnection, pending_id: str, now: datetime) -> TransferResult:
    """Void: the held amount is available again. Idempotent; raises if it was captured.
    (Its transfer code stays 'release', the word rows already carry.)"""
    return await _resolve(conn, pending_id, TransferKind.VOID, "release", now)


_HOLDS_BY_ID = select(_t.id, _t.debit_account_id, _t.credit_account_id, _t.amount, _t.order_id).where(
    _t.id.in_(bindparam("ids", expanding=True)), _t.kind == TransferKind.HOLD
)


async def capture_holds(conn: AsyncConnection, pending_ids: list[str], now: datetime) -> list[TransferResult]:
    """Capture many holds at once: for each id exactly what ``capture_hold`` does, in a
    constant number of statements (the poller captures the codes of a whole round together).

    The pending rows are immutable, so they are read first; the resolution rows go in as one
    multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` (UNIQUE pending_id still admits
    one resolution per hold); the account columns then move by the summed amounts, one
    UPDATE per account in descending id order like every other transfer. A hold that was not
    inserted is explained one by one as ``capture_hold`` would: an earlier capture is
    ``created=False``, a void raises ``HoldAlreadyResolved``, an unknown id ``NotFound``.
    """
    ids = list(dict.fromkeys(pending_ids))
    if not ids:
        return []
    holds = {r.id: r for r in (await conn.execute(_HOLDS_BY_ID, {"ids": ids})).all()}
    rows = [
        dict(
            id=derived_id(pid, TransferKind.CAPTURE),
            kind=TransferKind.CAPTURE,
            debit_account_id=h.debit_account_id,
            credit_account_id=h.credit_account_id,
            amount=h.amount,
            pending_id=pid,
            timeout_at=None,
            code="capture",
            order_id=h.order_id,
            reference=None,
            memo=None,
            created_at=now,
        )
        for pid in ids
        if (h := holds.get(pid)) is not None
    ]
    inserted: set[str] = set()
    if rows:
        inserted = set(
            (await conn.execute(insert_ignore(conn, transfers).returning(_t.pending_id), rows)).scalars()
        )
    moves: dict[int, dict[str, int]] = {}
    results: dict[str, TransferResult] = {}
    for row in rows:
        if row["pending_id"] not in inserted:
            continue
        amount = row["amount"]
        debit = moves.setdefault(row["debit_account_id"], dict.fromkeys(_MOVE_KEYS, 0))
        debit["d_pending"] -= amount
        debit["d_posted"] += amount
        credit = moves.setdefault(row["credit_account_id"], dict.fromkeys(_MOVE_KEYS, 0))
        credit["c_pending"] -= amount
        credit["c_posted"] += amount
        results[row["pending_id"]] = TransferResult(row["id"], True, amount)
    now_rows = [
        dict(acc=acc, **moves[acc])
        for acc in sorted(moves, reverse=True)
        if not _deferred(conn, acc, moves[acc])
    ]
    if now_rows:
        await conn.execute(_MOVE, now_rows)
    for pid in ids:
        if pid not in results:
            results[pid] = await _resolve_existing(
                conn, pid, derived_id(pid, TransferKind.CAPTURE), TransferKind.CAPTURE, "capture", now
            )
    return [results[pid] for pid in pending_ids]


async def hold_resolution(conn: AsyncConnection, pending_id: str) -> TransferKind | None:
    """CAPTURE, VOID, or None while the hold is still unresolved."""
    kind = await conn.scalar(select(transfers.c.kind).where(transfers.c.pending_id == pending_id))
    return None if kind is None else TransferKind(kind)


def _check_amount(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError(f"transfer amount must be a positive integer, got {amount!r}")
