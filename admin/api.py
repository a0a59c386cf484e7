"""/api: JSON for the dashboard's reads and actions, for scripts and other services.

Same guards and core services as the pages. Authentication is a staff session (with the
``X-CSRFToken`` header for writes, carrying the token of the dashboard's forms, which is
bound to the session) or ``Authorization: Bearer <staff API token>``. Amounts go
in as decimal strings (``"5.00"``, parsed by core.money, never floats) and come out as
``{minor, formatted}``. Write endpoints take an ``idempotency_key``: a retry with the same key
acts once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter

from admin import queries
from admin.context import breaker_states
from admin.filters import order_filter, transfer_filter
from admin.forms import FormError, reason_field
from core import support, users
from core.errors import OrderNotFound, UserNotFound
from core.money import MoneyError, money_json, parse_positive_amount
from core.staff import StaffMember, adjust_wallet, check_free_text
from core.users import find_user

MAX_BIGINT = 2**63 - 1
TelegramId = Annotated[int, PathParameter(ge=1, le=MAX_BIGINT, description="Telegram user id")]
OrderId = Annotated[str, PathParameter(min_length=1, max_length=36)]
Limit = Annotated[int, QueryParameter(ge=1, le=queries.MAX_PAGE)]
Text64 = Annotated[str | None, QueryParameter(max_length=64)]
Cursor = Annotated[
    str | None, QueryParameter(max_length=200, description="next_cursor from the previous page")
]
Day = Annotated[str | None, QueryParameter(max_length=10, description="YYYY-MM-DD (UTC)")]


@dataclass
class Money:
    minor: int
    formatted: str


@dataclass
class UserOut:
    id: int
    telegram_id: int
    username: str | None
    first_name: str | None
    blocked: bool
    unreachable: bool
    balance: Money
    held: Money
    available: Money
    created_at: datetime


@dataclass
class OrderOut:
    id: str
    user_id: int
    telegram_id: int | None
    service: str
    country: str
    status: str
    price: Money
    cost: Money | None
    provider: str | None
    phone: str | None
    code: str | None
    created_at: datetime
    expires_at: datetime | None
    closed_at: datetime | None


@dataclass
class TransferOut:
    id: str
    kind: str
    code: str
    debit_account: str
    credit_account: str
    amount: Money
    order_id: str | None
    pending_id: str | None
    reference: str | None
    memo: str | None
    created_at: datetime


@dataclass
class EventOut:
    event: str
    from_status: str | None
    to_status: str | None
    actor: str
    detail: dict[str, Any] | None
    created_at: datetime


@dataclass
class MessageOut:
    code: str | None
    text: str | None
    charged: bool
    received_at: datetime


@dataclass
class UserDetailOut:
    user: UserOut
    orders: list[OrderOut]
    transfers: list[TransferOut]


@dataclass
class OrderDetailOut:
    order: OrderOut
    events: list[EventOut]
    messages: list[MessageOut]
    transfers: list[TransferOut]


@dataclass
class OrdersPage:
    items: list[OrderOut]
    next_cursor: str | None


@dataclass
class TransfersPage:
    items: list[TransferOut]
    next_cursor: str | None


@dataclass
class AuditOut:
    id: int
    actor: str
    action: str
    target_type: str | None
    target_id: str | None
    reason: str | None
    detail: dict[str, Any] | None
    created_at: datetime


@dataclass
class AuditPage:
    items: list[AuditOut]
    next_cursor: str | None


@dataclass
class RunOut:
    id: int
    mode: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    findings: list[Any]
    fixes: list[Any]


@dataclass
class ProviderOut:
    name: str
    breaker_state: str
    breaker_failures: int | None
    upstream_balance: int | None
    upstream_currency: str | None
    balance_taken_at: datetime | None


@dataclass
class OverviewOut:
    day_start: datetime
    orders_today: dict[str, int]
    completion_rate: float | None
    captured_today: Money
    refunds_today: Money
    refund_count_today: int
    released_today: Money
    held_now: Money
    wallet_total: Money
    open_orders: dict[str, int]
    outbox_backlog: int
    providers: list[ProviderOut]


@dataclass
class AdjustIn:
    amount: str
    reason: str
    idempotency_key: str


@dataclass
class ReasonIn:
    reason: str
    idempotency_key: str | None = None


@dataclass
class BlockIn:
    blocked: bool
    reason: str


@dataclass
class WalletChangeOut:
    transfer_id: str
    created: bool
    amount: Money
    balance: Money
    held: Money
    available: Money


@dataclass
class CancelOut:
    order: OrderOut
    refunded: Money
    already: bool
    completed_instead: bool


@dataclass
class BlockOut:
    telegram_id: int
    blocked: bool
    changed: bool


def _ctx(request: Request[Any, Any, Any]) -> Any:
    return request.app.state.admin


def _m(ctx: Any, minor: int) -> Money:
    return Money(**money_json(int(minor), ctx.currency))  # type: ignore[arg-type]


def _user(ctx: Any, r: dict[str, Any]) -> UserOut:
    return UserOut(
        id=r["id"],
        telegram_id=r["telegram_id"],
        username=r["username"],
        first_name=r["first_name"],
        blocked=bool(r["blocked"]),
        unreachable=bool(r["unreachable"]),
        balance=_m(ctx, r["balance"]),
        held=_m(ctx, r["held"]),
        available=_m(ctx, r["available"]),
        created_at=r["created_at"],
    )


def _order(ctx: Any, r: dict[str, Any]) -> OrderOut:
    return OrderOut(
        id=r["id"],
        user_id=r["user_id"],
        telegram_id=r.get("telegram_id"),
        service=r["service"],
        country=r["country"],
        status=r["status"],
        price=_m(ctx, r["price"]),
        cost=_m(ctx, r["cost"]) if r.get("cost") is not None else None,
        provider=r["provider"],
        phone=r["phone"],
        code=r["code"],
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        closed_at=r["closed_at"],
    )


def _transfers(ctx: Any, rows: list[dict[str, Any]], names: dict[int, str]) -> list[TransferOut]:
    return [
        TransferOut(
            id=t["id"],
            kind=t["kind"],
            code=t["code"],
            debit_account=names.get(t["debit_account_id"], ""),
            credit_account=names.get(t["credit_account_id"], ""),
            amount=_m(ctx, t["amount"]),
            order_id=t["order_id"],
            pending_id=t["pending_id"],
            reference=t["reference"],
            memo=t["memo"],
            created_at=t["created_at"],
        )
        for t in rows
    ]


async def _order_or_404(conn: Any, order_id: str) -> dict[str, Any]:
    """The order as the read model shows it, or 404: an action's answer re-reads it after core
    changed it, and a missing order is the caller's mistake, never a 500."""
    o = await queries.order_detail(conn, order_id)
    if o is None:
        raise OrderNotFound(f"no order {order_id}")
    return o


async def _names(conn: Any, rows: list[dict[str, Any]]) -> dict[int, str]:
    return await queries.account_names(
        conn, [t["debit_account_id"] for t in rows] + [t["credit_account_id"] for t in rows]
    )


async def _providers(ctx: Any, balances: dict[str, dict[str, Any]]) -> list[ProviderOut]:
    breakers = await breaker_states(ctx.board)
    out = []
    for name in sorted(set(ctx.providers) | set(balances) | set(breakers)):
        b, bal = breakers.get(name, {}), balances.get(name)
        failures = b.get("failures")
        out.append(
            ProviderOut(
                name=name,
                breaker_state=str(b.get("state", "unknown")),
                breaker_failures=int(failures) if isinstance(failures, int) else None,
                upstream_balance=bal["amount"] if bal else None,
                upstream_currency=bal["currency"] if bal else None,
                balance_taken_at=bal["taken_at"] if bal else None,
            )
        )
    return out


VIEWER, SUPPORT, ADMIN = {"role": "viewer"}, {"role": "support"}, {"role": "admin"}
RESPONSES_NOTE = "401 without credentials, 403 without the role, 400/404/409 with a detail."


@get("/api/overview", opt=VIEWER, tags=["overview"], description=RESPONSES_NOTE)
async def api_overview(request: Request[Any, Any, Any]) -> OverviewOut:
    ctx = _ctx(request)
    async with ctx.db.read() as conn:
        ov = await queries.overview(conn, ctx.clock.now())
    return OverviewOut(
        day_start=ov.day_start,
        orders_today=ov.orders_today,
        completion_rate=ov.completion_rate,
        captured_today=_m(ctx, ov.captured_today),
        refunds_today=_m(ctx, ov.refunds_today),
        refund_count_today=ov.refund_count_today,
        released_today=_m(ctx, ov.released_today),
        held_now=_m(ctx, ov.held_now),
        wallet_total=_m(ctx, ov.wallet_total),
        open_orders=ov.open_orders,
        outbox_backlog=int(ov.outbox_backlog),
        providers=await _providers(ctx, ov.provider_balances),
    )


@get("/api/users", opt=VIEWER, tags=["users"])
async def api_users(request: Request[Any, Any, Any], q: Text64 = None, limit: Limit = 50) -> list[UserOut]:
    ctx = _ctx(request)
    async with ctx.db.read() as conn:
        rows = await queries.search_users(conn, q or "", limit=limit)
    return [_user(ctx, r) for r in rows]


@get("/api/users/{telegram_id:int}", opt=VIEWER, tags=["users"])
async def api_user(request: Request[Any, Any, Any], telegram_id: TelegramId) -> UserDetailOut:
    ctx = _ctx(request)
    async with ctx.db.read() as conn:
        user = await queries.user_by_telegram_id(conn, telegram_id)
        if user is None:
            raise UserNotFound(f"no user with Telegram id {telegram_id}")
        xfers = await queries.list_transfers(conn, queries.TransferFilter(user=str(telegram_id)), limit=50)
        names = await _names(conn, xfers.rows)
        user_orders = await queries.user_orders(conn, user["id"], limit=50)
    return UserDetailOut(
        user=_user(ctx, user),
        orders=[_order(ctx, {**o, "telegram_id": telegram_id}) for o in user_orders],
        transfers=_transfers(ctx, xfers.rows, names),
    )


async def _adjust(
    request: Request[Any, Any, Any], telegram_id: int, data: AdjustIn, direction: str
) -> WalletChangeOut:
    ctx = _ctx(request)
    me: StaffMember = request.user
    try:
        amount = parse_positive_amount(data.amount, ctx.currency)
    except MoneyError as exc:
        raise FormError(str(exc)) from None
    reason = reason_field({"reason": data.reason})
    key = check_free_text((data.idempotency_key or "").strip(), "idempotency_key")
    if not 1 <= len(key) <= 100:
        raise FormError("idempotency_key must be 1 to 100 characters")
    async with ctx.db.read() as conn:
        if await find_user(conn, telegram_id) is None:
            raise UserNotFound(f"no user with Telegram id {telegram_id}")
    change = await adjust_wallet(
        ctx.core.wallets,
        me,
        direction,
        telegram_id,
        amount,
        reason=reason,
        idempotency_key=f"api:{me.id}:{key}",
        support_credit_limit=ctx.core.settings.SUPPORT_CREDIT_LIMIT,
    )
    w = change.wallet
    return WalletChangeOut(
        transfer_id=change.transfer_id,
        created=change.created,
        amount=_m(ctx, change.amount),
        balance=_m(ctx, w.balance),
        held=_m(ctx, w.held),
        available=_m(ctx, w.available),
    )


@post("/api/users/{telegram_id:int}/credit", opt=SUPPORT, tags=["users"], status_code=200)
async def api_credit(
    request: Request[Any, Any, Any], telegram_id: TelegramId, data: JSONBody[AdjustIn]
) -> WalletChangeOut:
    return await _adjust(request, telegram_id, data, "credit")


@post("/api/users/{telegram_id:int}/debit", opt=SUPPORT, tags=["users"], status_code=200)
async def api_debit(
    request: Request[Any, Any, Any], telegram_id: TelegramId, data: JSONBody[AdjustIn]
) -> WalletChangeOut:
    return await _adjust(request, telegram_id, data, "debit")


@post("/api/users/{telegram_id:int}/block", opt=ADMIN, tags=["users"], status_code=200)
async def api_block(
    request: Request[Any, Any, Any], telegram_id: TelegramId, data: JSONBody[BlockIn]
) -> BlockOut:
    ctx = _ctx(request)
    reason = reason_field({"reason": data.reason})
    changed = await users.change_blocked(
        ctx.db, telegram_id, bool(data.blocked), actor=request.user.actor, reason=reason, now=ctx.clock.now()
    )
    return BlockOut(telegram_id=telegram_id, blocked=bool(data.blocked), changed=changed)


@get("/api/orders", opt=VIEWER, tags=["orders"])
async def api_orders(
    request: Request[Any, Any, Any],
    status: Text64 = None,
    service: Text64 = None,
    country: Text64 = None,
    provider: Text64 = None,
    user: Text64 = None,
    date_from: Day = None,
    date_to: Day = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> OrdersPage:
    ctx = _ctx(request)
    flt = order_filter(status, service, country, provider, user, date_from, date_to)
    async with ctx.db.read() as conn:
        page = await queries.list_orders(conn, flt, cursor=cursor, limit=limit)
    return OrdersPage(items=[_order(ctx, r) for r in page.rows], next_cursor=page.next_cursor)


@get("/api/orders/{order_id:str}", opt=VIEWER, tags=["orders"])
async def api_order(request: Request[Any, Any, Any], order_id: OrderId) -> OrderDetailOut:
    ctx = _ctx(request)
    async with ctx.db.read() as conn:
        o = await _order_or_404(conn, order_id)
        names = await _names(conn, o["transfers"])
    return OrderDetailOut(
        order=_order(ctx, o),
        events=[
            EventOut(
                event=e["event"],
                from_status=e["from_status"],
                to_status=e["to_status"],
                actor=e["actor"],
                detail=e["detail"],
                created_at=e["created_at"],
            )
            for e in o["events"]
        ],
        messages=[
            MessageOut(
                code=m["code"], text=m["text"], charged=bool(m["charged"]), received_at=m["received_at"]
            )
            for m in o["messages"]
        ],
        transfers=_transfers(ctx, o["transfers"], names),
    )


@post("/api/orders/{order_id:str}/cancel", opt=SUPPORT, tags=["orders"], status_code=200)
async def api_cancel(
    request: Request[Any, Any, Any], order_id: OrderId, data: JSONBody[ReasonIn]
) -> CancelOut:
    ctx = _ctx(request)
    reason = reason_field({"reason": data.reason})
    result = await support.cancel_order(
        ctx.db, ctx.core.orders, order_id, actor=request.user.actor, reason=reason, now=ctx.clock.now()
    )
    async with ctx.db.read() as conn:
        o = await _order_or_404(conn, order_id)
    return CancelOut(
        order=_order(ctx, o),
        refunded=_m(ctx, result.refunded),
        already=result.already,
        completed_instead=result.completed_instead,
    )


@post("/api/orders/{order_id:str}/refund", opt=ADMIN, tags=["orders"], status_code=200)
async def api_refund(
    request: Request[Any, Any, Any], order_id: OrderId, data: JSONBody[ReasonIn]
) -> OrderOut:
    ctx = _ctx(request)
    reason = reason_field({"reason": data.reason})
    key = check_free_text((data.idempotency_key or "").strip()[:100], "idempotency_key") or None
    await ctx.core.orders.staff_refund(
        order_id,
        actor=request.user.actor,
        reason=reason,
        idempotency_key=f"api:{request.user.id}:{key}" if key else None,
    )
    async with ctx.db.read() as conn:
        o = await _order_or_404(conn, order_id)
    return _order(ctx, o)


@get("/api/transfers", opt=VIEWER, tags=["ledger"])
async def api_transfers(
    request: Request[Any, Any, Any],
    code: Text64 = None,
    user: Text64 = None,
    account: Text64 = None,
    order_id: Text64 = None,
    date_from: Day = None,
    date_to: Day = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> TransfersPage:
    ctx = _ctx(request)
    flt = transfer_filter(code, user, account, order_id, date_from, date_to)
    async with ctx.db.read() as conn:
        page = await queries.list_transfers(conn, flt, cursor=cursor, limit=limit)
        names = await _names(conn, page.rows)
    return TransfersPage(items=_transfers(ctx, page.rows, names), next_cursor=page.next_cursor)


@get("/api/audit", opt=VIEWER, tags=["audit"])
async def api_audit(
    request: Request[Any, Any, Any],
    actor: Text64 = None,
    action: Text64 = None,
    target: Text64 = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> AuditPage:
    ctx = _ctx(request)
    async with ctx.db.read() as conn:
        page = await queries.list_audit(
            conn, queries.AuditFilter(actor, action, target), cursor=cursor, limit=limit
        )
    return AuditPage(
        items=[
            AuditOut(
                id=a["id"],
                actor=a["actor"],
                action=a["action"],
                target_type=a["target_type"],
                target_id=a["target_id"],
                reason=a["reason"],
                detail=a["detail"],
                created_at=a["created_at"],
            )
            for a in page.rows
        ],
        next_cursor=page.next_cursor,
    )


@get("/api/reconciliation", opt=VIEWER, tags=["reconciliation"])
async def api_reconciliation(request: Request[Any, Any, Any], limit: Limit = 50) -> list[RunOut]:
    ctx = _ctx(request)
    async with ctx.db.read() as conn:
        runs = await queries.reconciliation_list(conn, limit=limit)
    return [
        RunOut(
            id=r["id"],
            mode=r["mode"],
            status=r["status"],
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            findings=list(r["findings"] or []),
            fixes=list(r["fixes"] or []),
        )
        for r in runs
    ]


@get("/api/providers", opt=VIEWER, tags=["providers"])
async def api_providers(request: Request[Any, Any, Any]) -> list[ProviderOut]:
    ctx = _ctx(request)
    async with ctx.db.read() as conn:
        balances = await queries.latest_provider_balances(conn)
    return await _providers(ctx, balances)


HANDLERS = [
    api_overview,
    api_users,
    api_user,
    api_credit,
    api_debit,
    api_block,
    api_orders,
    api_order,
    api_cancel,
    api_refund,
    api_transfers,
    api_audit,
    api_reconciliation,
    api_providers,
]
