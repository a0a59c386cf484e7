"""Read models for the dashboard: the lists, filters and aggregates staff look at.

Reads only; every change goes through core services. Written for a large shop: each query is
served by an index (keyset pagination on ``(created_at, id)``, aggregates over *today* via the
``created_at`` indexes), and the two totals that would otherwise scan every wallet are read
from the system accounts instead — by double entry, money held in all wallets equals
``revenue.credits_pending`` and the sum of all wallet balances equals the negated net of the
system accounts.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, literal_column, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from core import ledger
from core.db.tables import (
    accounts,
    audit_log,
    countries,
    country_price_overrides,
    job_runs,
    offers,
    order_events,
    order_messages,
    orders,
    outbox,
    price_overrides,
    provider_balances,
    reconciliation_runs,
    services,
    transfers,
    users,
)
from core.ledger import SYSTEM_ACCOUNTS

ORDER_STATUSES = ("reserving", "waiting", "completed", "cancelled", "expired", "failed", "refunded")
OPEN_STATUSES = ("reserving", "waiting")
FINAL_STATUSES = ("completed", "cancelled", "expired", "failed", "refunded")
TRANSFER_CODES = ("purchase", "capture", "release", "topup", "adjustment", "refund")
MAX_PAGE = 200


class BadQuery(ValueError):
    """A filter or cursor that cannot be honoured (shown as a 400)."""


# Numbers typed by staff are ASCII digits only (str.isdigit() also accepts '²' and '١', which
# int() then refuses) and must fit the column they are compared with, or the database errors.
_DIGITS = re.compile(r"[0-9]{1,19}")
_ROW_ID = re.compile(r"[0-9A-Za-z_.:-]{1,64}")
MAX_BIGINT = 2**63 - 1  # BIGINT columns (telegram_id)
MAX_INT = 2**31 - 1  # INTEGER columns (users.id, audit_log.id)


# --- keyset cursors -------------------------------------------------------------------------


def encode_cursor(created_at: datetime, row_id: object) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, row_id = raw.partition("|")
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None or not row_id:
            raise ValueError
        return when, row_id
    except (ValueError, UnicodeDecodeError):
        raise BadQuery("the page cursor is not valid; start from the first page") from None


@dataclass
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None


def _limit(limit: int | None, default: int = 50) -> int:
    if limit is None:
        return default
    if limit < 1 or limit > MAX_PAGE:
        raise BadQuery(f"limit must be between 1 and {MAX_PAGE}")
    return limit


async def _page(
    conn: AsyncConnection,
    stmt: Select[Any],
    created: Any,
    ident: Any,
    cursor: str | None,
    limit: int,
    id_cast: type = str,
) -> Page:
    after = decode_cursor(cursor)
    if after is not None:
        key: Any = _as_id(after[1], MAX_INT) if id_cast is int else after[1]
        if key is None or not _ROW_ID.fullmatch(after[1]):
            raise BadQuery("the page cursor is not valid; start from the first page")
        stmt = stmt.where(tuple_(created, ident) < tuple_(after[0], key))
    stmt = stmt.order_by(created.desc(), ident.desc()).limit(limit + 1)
    rows = [dict(r) for r in (await conn.execute(stmt)).mappings().all()]
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
    return Page(rows, nxt)


# --- users -----------------------------------------------------------------------------------

_USER_COLS = (
    users.c.id,
    users.c.telegram_id,
    users.c.username,
    users.c.first_name,
    users.c.wallet_account_id,
    users.c.blocked,
    users.c.unreachable,
    users.c.created_at,
)


def _wallet_cols() -> tuple[Any, ...]:
    return (
        (accounts.c.credits_posted - accounts.c.debits_posted).label("balance"),
        accounts.c.debits_pending.label("held"),
    )


async def search_users(conn: AsyncConnection, query: str, limit: int = 50) -> list[dict[str, Any]]:
    """Exact Telegram id, or a username prefix (with or without '@'); newest users first when empty."""
    q = (query or "").strip().lstrip("@")
    stmt = select(*_USER_COLS, *_wallet_cols()).join(accounts, accounts.c.id == users.c.wallet_account_id)
    if not q:
        stmt = stmt.order_by(users.c.id.desc())
    elif _DIGITS.fullmatch(q) or (q.isascii() and q.isdigit()):
        number = _as_id(q)
        if number is None:
            stmt = stmt.where(users.c.id < 0)
        elif number <= MAX_INT:
            stmt = stmt.where(or_(users.c.telegram_id == number, users.c.id == number))
        else:
            stmt = stmt.where(users.c.telegram_id == number)
    else:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(users.c.username.like(escaped + "%", escape="\\")).order_by(users.c.username)
    rows = (await conn.execute(stmt.limit(limit))).mappings().all()
    return [_with_available(dict(r)) for r in rows]


def _as_id(text: str, maximum: int = MAX_BIGINT) -> int | None:
    """ASCII digits naming a number from 0 to ``maximum`` (a column's range), else None."""
    if _DIGITS.fullmatch(text) and int(text) <= maximum:
        return int(text)
    return None


def _with_available(row: dict[str, Any]) -> dict[str, Any]:
    row["available"] = row["balance"] - row["held"]
    return row


async def user_by_telegram_id(conn: AsyncConnection, telegram_id: int) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                select(*_USER_COLS, *_wallet_cols())
                .join(accounts, accounts.c.id == users.c.wallet_account_id)
                .where(users.c.telegram_id == telegram_id)
            )
        )
        .mappings()
        .first()
    )
    return _with_available(dict(row)) if row else None


async def resolve_user_filter(conn: AsyncConnection, text: str | None) -> int | None:
    """A user filter typed by staff (Telegram id or @username) → users.id; BadQuery if none."""
    text = (text or "").strip().lstrip("@")
    if not text:
        return None
    if re.fullmatch(r"-?[0-9]+", text):
        number = _as_id(text)
        uid = (await conn.scalar(select(users.c.id).where(users.c.telegram_id == number))) if number else None
    else:
        uid = await conn.scalar(select(users.c.id).where(users.c.username == text))
    if uid is None:
        raise BadQuery(f"no user {text!r}")
    return int(uid)


# --- orders ----------------------------------------------------------------------------------


@dataclass
class OrderFilter:
    status: str | None = None
    service: str | None = None
    country: str | None = None
    provider: str | None = None
    user: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def check(self) -> None:
        if self.status and self.status not in ORDER_STATUSES:
            raise BadQuery(f"unknown status {self.status!r}; choose from {', '.join(ORDER_STATUSES)}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise BadQuery("the start date is after the end date")
        for name in ("service", "country", "provider"):
            value = getattr(self, name)
            if value is not None and len(value) > 64:
                raise BadQuery(f"{name} is too long")

    def as_params(self) -> dict[str, str]:
        return {
            k: (v.isoformat() if isinstance(v, date) else str(v))
            for k, v in self.__dict__.items()
            if v not in (None, "")
        }


_ORDER_LIST_COLS = (
    orders.c.id,
    orders.c.user_id,
    orders.c.service,
    orders.c.country,
    orders.c.price,
    orders.c.cost,
    orders.c.status,
    orders.c.provider,
    orders.c.phone,
    orders.c.code,
    orders.c.created_at,
    orders.c.expires_at,
    orders.c.closed_at,
)


def _unindexed(conn: AsyncConnection, column: Any) -> Any:
    """On SQLite, ``+column``: the same value, but the planner may not use an index for it.

    Keyset pages must walk an index in ``created_at`` order and stop after one page. Left
    alone, SQLite's planner often prefers an index on an equality filter (``status``) and
    then sorts every matching row — hundreds of thousands on a large shop — for each page.
    PostgreSQL plans this well from its statistics, so it gets the plain column.
    """
    if conn.dialect.name == "sqlite":
        return literal_column(f"+{column.table.name}.{column.name}", type_=column.type)
    return column


async def list_orders(
    conn: AsyncConnection, flt: OrderFilter, cursor: str | None = None, limit: int | None = None
) -> Page:
    flt.check()
    stmt = select(*_ORDER_LIST_COLS)
    c = orders.c
    if flt.status:
        stmt = stmt.where(_unindexed(conn, c.status) == flt.status)
    if flt.service:
        stmt = stmt.where(_unindexed(conn, c.service) == flt.service.strip().lower())
    if flt.country:
        stmt = stmt.where(_unindexed(conn, c.country) == flt.country.strip().upper())
    if flt.provider:
        stmt = stmt.where(_unindexed(conn, c.provider) == flt.provider.strip().lower())
    user_id = await resolve_user_filter(conn, flt.user)
    if user_id is not None:
        stmt = stmt.where(c.user_id == user_id)  # (user_id, created_at) serves the order
    if flt.date_from:
        stmt = stmt.where(c.created_at >= _midnight(flt.date_from))
    if flt.date_to:
        stmt = stmt.where(c.created_at < _midnight(flt.date_to) + timedelta(days=1))
    page = await _page(conn, stmt, c.created_at, c.id, cursor, _limit(limit))
    # Owners in a second, primary-key query: a join in the page query invites the planner to
    # drive the scan from users instead of walking orders in created_at order.
    owners = (
        {
            r.id: r
            for r in (
                await conn.execute(
                    select(users.c.id, users.c.telegram_id, users.c.username).where(
                        users.c.id.in_({row["user_id"] for row in page.rows})
                    )
                )
            ).all()
        }
        if page.rows
        else {}
    )
    for row in page.rows:
        owner = owners.get(row["user_id"])
        row["telegram_id"] = owner.telegram_id if owner else None
        row["username"] = owner.username if owner else None
    return page


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


async def order_detail(conn: AsyncConnection, order_id: str) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                select(orders, users.c.telegram_id, users.c.username, users.c.first_name)
                .join(users, users.c.id == orders.c.user_id)
                .where(orders.c.id == order_id)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    detail = dict(row)
    detail["events"] = [
        dict(r)
        for r in (
            await conn.execute(
                select(order_events).where(order_events.c.order_id == order_id).order_by(order_events.c.id)
            )
        )
        .mappings()
        .all()
    ]
    detail["messages"] = [
        dict(r)
        for r in (
            await conn.execute(
                select(order_messages)
                .where(order_messages.c.order_id == order_id)
                .order_by(order_messages.c.received_at, order_messages.c.id)
            )
        )
        .mappings()
        .all()
    ]
    detail["transfers"] = [
        dict(r)
        for r in (
            await conn.execute(
                select(transfers).where(transfers.c.order_id == order_id).order_by(transfers.c.created_at)
            )
        )
        .mappings()
        .all()
    ]
    return detail


async def user_orders(conn: AsyncConnection, user_id: int, limit: int = 20) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in (
            await conn.execute(
                select(*_ORDER_LIST_COLS)
                .where(orders.c.user_id == user_id)
                .order_by(orders.c.created_at.desc())
                .limit(limit)
            )
        )
        .mappings()
        .all()
    ]


# --- transfers -------------------------------------------------------------------------------


@dataclass
class TransferFilter:
    code: str | None = None
    user: str | None = None
    account: str | None = None  # a system account code: revenue, topups, adjustments
    order_id: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def check(self) -> None:
        if self.code and self.code not in TRANSFER_CODES:
            raise BadQuery(f"unknown code {self.code!r}; choose from {', '.join(TRANSFER_CODES)}")
        if self.account and self.account not in SYSTEM_ACCOUNTS:
            raise BadQuery(f"unknown account {self.account!r}; choose from {', '.join(SYSTEM_ACCOUNTS)}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise BadQuery("the start date is after the end date")
        if self.order_id and len(self.order_id) > 36:
            raise BadQuery("order id is too long")

    def as_params(self) -> dict[str, str]:
        return {
            k: (v.isoformat() if isinstance(v, date) else str(v))
            for k, v in self.__dict__.items()
            if v not in (None, "")
        }


async def _transfer_stmt(conn: AsyncConnection, flt: TransferFilter) -> Select[Any]:
    flt.check()
    stmt = select(transfers)
    if flt.code:
        stmt = stmt.where(transfers.c.code == flt.code)
    account_id = None
    if flt.user:
        user_id = await resolve_user_filter(conn, flt.user)
        account_id = await conn.scalar(select(users.c.wallet_account_id).where(users.c.id == user_id))
    account_ids: tuple[int, ...] = ()
    if account_id is not None:
        account_ids = (account_id,)
    elif flt.account:  # every shard of the system account
        account_ids = await ledger.system_account_ids(conn, flt.account)
    if account_ids:
        stmt = stmt.where(
            or_(transfers.c.debit_account_id.in_(account_ids), transfers.c.credit_account_id.in_(account_ids))
        )
    if flt.order_id:
        stmt = stmt.where(transfers.c.order_id == flt.order_id.strip())
    if flt.date_from:
        stmt = stmt.where(transfers.c.created_at >= _midnight(flt.date_from))
    if flt.date_to:
        stmt = stmt.where(transfers.c.created_at < _midnight(flt.date_to) + timedelta(days=1))
    return stmt


async def list_transfers(
    conn: AsyncConnection, flt: TransferFilter, cursor: str | None = None, limit: int | None = None
) -> Page:
    stmt = await _transfer_stmt(conn, flt)
    return await _page(conn, stmt, transfers.c.created_at, transfers.c.id, cursor, _limit(limit))


async def account_names(conn: AsyncConnection, account_ids: Sequence[int]) -> dict[int, str]:
    """Readable names for account ids: system codes, or the wallet owner's Telegram id."""
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    names: dict[int, str] = {}
    for row in (
        await conn.execute(
            select(accounts.c.id, accounts.c.code).where(accounts.c.id.in_(ids), accounts.c.code.is_not(None))
        )
    ).all():
        names[row.id] = row.code
    rest = [i for i in ids if i not in names]
    if rest:
        for owner in (
            await conn.execute(
                select(users.c.wallet_account_id, users.c.telegram_id, users.c.username).where(
                    users.c.wallet_account_id.in_(rest)
                )
            )
        ).all():
            names[owner.wallet_account_id] = f"wallet {owner.telegram_id}" + (
                f" @{owner.username}" if owner.username else ""
            )
    for i in ids:
        names.setdefault(i, f"account {i}")
    return names


# --- overview --------------------------------------------------------------------------------


@dataclass
class Overview:
    day_start: datetime
    orders_today: dict[str, int] = field(default_factory=dict)
    completion_rate: float | None = None
    captured_today: int = 0
    released_today: int = 0
    released_count_today: int = 0
    refunds_today: int = 0
    refund_count_today: int = 0
    held_now: int = 0
    wallet_total: int = 0
    open_orders: dict[str, int] = field(default_factory=dict)
    outbox_backlog: int = 0
    outbox_oldest: datetime | None = None
    outbox_failed: int = 0
    jobs: list[dict[str, Any]] = field(default_factory=list)
    last_reconciliation: dict[str, Any] | None = None
    provider_balances: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def orders_today_total(self) -> int:
        return sum(self.orders_today.values())


async def overview(conn: AsyncConnection, now: datetime) -> Overview:
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    ov = Overview(day_start=start)
    # One pass over today's slice of the created_at index; a GROUP BY status would tempt
    # SQLite into walking the whole status index instead.
    counts = (
        await conn.execute(
            select(
                *(
                    func.coalesce(func.sum(case((orders.c.status == s, 1), else_=0)), 0)
                    for s in ORDER_STATUSES
                )
            ).where(orders.c.created_at >= start)
        )
    ).one()
    ov.orders_today = {s: int(n) for s, n in zip(ORDER_STATUSES, counts, strict=True) if n}
    finished = sum(ov.orders_today.get(s, 0) for s in FINAL_STATUSES)
    done = ov.orders_today.get("completed", 0) + ov.orders_today.get("refunded", 0)
    ov.completion_rate = (done / finished) if finished else None
    for code, total, n in (
        await conn.execute(
            select(transfers.c.code, func.coalesce(func.sum(transfers.c.amount), 0), func.count())
            .where(transfers.c.created_at >= start, transfers.c.code.in_(("capture", "release", "refund")))
            .group_by(transfers.c.code)
        )
    ).all():
        if code == "capture":
            ov.captured_today = int(total)
        elif code == "release":
            ov.released_today, ov.released_count_today = int(total), int(n)
        else:
            ov.refunds_today, ov.refund_count_today = int(total), int(n)
    # By primary key: with many wallets (code NULL) SQLite may scan accounts for ``code IN``.
    system_ids = [
        account_id for code in SYSTEM_ACCOUNTS for account_id in await ledger.system_account_ids(conn, code)
    ]
    for row in (await conn.execute(select(accounts).where(accounts.c.id.in_(system_ids)))).mappings():
        ov.wallet_total += row["debits_posted"] - row["credits_posted"]
        if row["kind"] == ledger.REVENUE:  # summed over its shards
            ov.held_now += int(row["credits_pending"])
    for status, n in (
        await conn.execute(
            select(orders.c.status, func.count())
            .where(orders.c.status.in_(OPEN_STATUSES))
            .group_by(orders.c.status)
        )
    ).all():
        ov.open_orders[status] = int(n)
    ov.outbox_backlog, ov.outbox_oldest = (
        await conn.execute(
            select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.status == "pending")
        )
    ).one()
    ov.outbox_failed = int(
        await conn.scalar(select(func.count()).select_from(outbox).where(outbox.c.status == "failed")) or 0
    )
    ov.jobs = await jobs(conn, now)
    last = await reconciliation_list(conn, limit=1)
    ov.last_reconciliation = last[0] if last else None
    ov.provider_balances = await latest_provider_balances(conn)
    return ov


async def jobs(conn: AsyncConnection, now: datetime) -> list[dict[str, Any]]:
    out = []
    for row in (await conn.execute(select(job_runs).order_by(job_runs.c.job))).mappings():
        item = dict(row)
        last = row["last_finished_at"] or row["last_started_at"]
        item["lag_seconds"] = (now - last).total_seconds() if last else None
        out.append(item)
    return out


async def latest_provider_balances(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    names = [r[0] for r in (await conn.execute(select(provider_balances.c.provider).distinct())).all()]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        row = (
            (
                await conn.execute(
                    select(provider_balances)
                    .where(provider_balances.c.provider == name)
                    .order_by(provider_balances.c.taken_at.desc())
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        if row:
            out[name] = dict(row)
    return out


async def reconciliation_list(conn: AsyncConnection, limit: int = 50) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in (
            await conn.execute(
                select(reconciliation_runs)
                .order_by(reconciliation_runs.c.started_at.desc(), reconciliation_runs.c.id.desc())
                .limit(limit)
            )
        )
        .mappings()
        .all()
    ]


async def reconciliation_run(conn: AsyncConnection, run_id: int) -> dict[str, Any] | None:
    row = (
        (await conn.execute(select(reconciliation_runs).where(reconciliation_runs.c.id == run_id)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


# --- catalogue -------------------------------------------------------------------------------


async def catalogue(conn: AsyncConnection) -> list[dict[str, Any]]:
    """One row per service: offers summary and its price override."""
    agg = (
        select(
            offers.c.service,
            func.count().label("offers"),
            func.min(offers.c.cost).label("min_cost"),
            func.max(offers.c.cost).label("max_cost"),
            func.sum(offers.c.stock).label("stock"),
        )
        .group_by(offers.c.service)
        .subquery()
    )
    rows = (
        (
            await conn.execute(
                select(
                    services.c.code,
                    services.c.name,
                    services.c.popularity,
                    agg.c.offers,
                    agg.c.min_cost,
                    agg.c.max_cost,
                    agg.c.stock,
                    price_overrides.c.markup_percent,
                    price_overrides.c.fixed_price,
                    price_overrides.c.updated_at,
                )
                .select_from(
                    services.outerjoin(agg, agg.c.service == services.c.code).outerjoin(
                        price_overrides, price_overrides.c.service == services.c.code
                    )
                )
                .order_by(services.c.popularity.desc(), services.c.code)
            )
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows]


async def provider_offer_counts(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    rows = (
        (
            await conn.execute(
                select(
                    offers.c.provider,
                    func.count().label("offers"),
                    func.sum(offers.c.stock).label("stock"),
                    func.max(offers.c.updated_at).label("updated_at"),
                ).group_by(offers.c.provider)
            )
        )
        .mappings()
        .all()
    )
    return {r["provider"]: dict(r) for r in rows}


# --- audit -----------------------------------------------------------------------------------


@dataclass
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    target: str | None = None

    def as_params(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items() if v not in (None, "")}


async def list_audit(
    conn: AsyncConnection, flt: AuditFilter, cursor: str | None = None, limit: int | None = None
) -> Page:
    stmt = select(audit_log)
    if flt.actor:
        stmt = stmt.where(audit_log.c.actor == flt.actor.strip())
    if flt.action:
        stmt = stmt.where(audit_log.c.action == flt.action.strip())
    if flt.target:
        stmt = stmt.where(audit_log.c.target_id == flt.target.strip())
    return await _page(conn, stmt, audit_log.c.created_at, audit_log.c.id, cursor, _limit(limit), int)


async def users_by_ids(conn: AsyncConnection, ids: Sequence[str | int]) -> dict[str, dict[str, Any]]:
    """Users by internal id (as the audit log stores them), keyed by that id as text."""
    wanted = {int(i) for i in ids if str(i).isdigit() and int(i) <= MAX_INT}
    if not wanted:
        return {}
    rows = (
        (
            await conn.execute(
                select(users.c.id, users.c.telegram_id, users.c.username, users.c.first_name).where(
                    users.c.id.in_(wanted)
                )
            )
        )
        .mappings()
        .all()
    )
    return {str(r["id"]): dict(r) for r in rows}


# --- choices for the filter and form selects --------------------------------------------------


async def service_choices(conn: AsyncConnection) -> list[str]:
    return [r[0] for r in await conn.execute(select(services.c.code).order_by(services.c.code))]


async def country_choices(conn: AsyncConnection) -> list[str]:
    return [r[0] for r in await conn.execute(select(countries.c.code).order_by(countries.c.code))]


async def provider_choices(conn: AsyncConnection) -> list[str]:
    return [
        r[0] for r in await conn.execute(select(offers.c.provider).distinct().order_by(offers.c.provider))
    ]


async def language_choices(conn: AsyncConnection) -> list[str]:
    """Languages users have (users.language; empty until users choose one)."""
    rows = await conn.execute(
        select(users.c.language).where(users.c.language.is_not(None)).distinct().order_by(users.c.language)
    )
    return [r[0] for r in rows if r[0]]


async def audit_choices(conn: AsyncConnection) -> tuple[list[str], list[str]]:
    """The actions and actors the audit log has, for its filter selects."""
    actions = [
        r[0] for r in await conn.execute(select(audit_log.c.action).distinct().order_by(audit_log.c.action))
    ]
    actors = [
        r[0] for r in await conn.execute(select(audit_log.c.actor).distinct().order_by(audit_log.c.actor))
    ]
    return actions, actors


async def country_prices(conn: AsyncConnection) -> list[dict[str, Any]]:
    """One row per country with offers, or with a markup of its own."""
    agg = (
        select(
            offers.c.country,
            func.count().label("offers"),
            func.min(offers.c.cost).label("min_cost"),
            func.sum(offers.c.stock).label("stock"),
        )
        .group_by(offers.c.country)
        .subquery()
    )
    rows = (
        await conn.execute(
            select(
                countries.c.code,
                agg.c.offers,
                agg.c.min_cost,
                agg.c.stock,
                country_price_overrides.c.markup_percent,
                country_price_overrides.c.updated_at,
            )
            .select_from(
                countries.outerjoin(agg, agg.c.country == countries.c.code).outerjoin(
                    country_price_overrides, country_price_overrides.c.country == countries.c.code
                )
            )
            .where(or_(agg.c.offers.is_not(None), country_price_overrides.c.markup_percent.is_not(None)))
            .order_by(countries.c.code)
        )
    ).mappings()
    return [dict(r) for r in rows]
