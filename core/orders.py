"""Order services: buy, deliver codes, cancel, expire, fail, recover, refund.

The promise these services keep: a user never pays for a number that gave no code, never
pays twice, and the shop never releases money it did not hold. How:

* Every state change is ``order_states.transition`` applied as compare-and-set on
  ``orders.status``, in one transaction with its ledger effect (capture, release or refund),
  its ``order_events`` row and its outbox notification. Whoever loses a race changes nothing.
* A purchase runs in three phases (DESIGN §4). Phase 1 commits the hold and a ``reserving``
  order; phase 2 calls the provider with *no transaction open*; phase 3 commits the outcome.
  A crash anywhere leaves a ``reserving`` order that ``recover_reserving`` resolves.
* Cancel and expiry look for a code one last time before releasing the hold, so a code that
  arrived just now is captured, never given away after a refund.
* Upstream bookkeeping (cancel or finish at the provider) is tracked apart from what the
  user sees and retried by a job, so a provider that is down never delays a refund.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, case, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core import idempotency, jobs, ledger, outbox
from core.clock import Clock
from core.config import Settings
from core.db.engine import Database, insert_ignore
from core.db.tables import UTCDateTime, order_events, order_messages, orders, transfers, users
from core.db.tables import outbox as outbox_t
from core.errors import (
    AlreadyInProgress,
    InvalidInput,
    NoProviderAvailable,
    OrderNotFound,
    OrderStateConflict,
    UserBlocked,
    UserNotFound,
)
from core.order_states import LedgerEffect, OrderEvent, OrderStatus, Transition, transition
from core.providers.base import ActivationState, ActivationStatus, Provider, RentRequest, Rental, SmsMessage
from core.providers.errors import (
    AccountError,
    AlreadyClosed,
    BusinessError,
    EarlyCancelDenied,
    OutcomeUnknown,
    OutOfStock,
    PriceTooHigh,
    ProviderError,
    TransientError,
)

log = logging.getLogger(__name__)

FINAL_CHECK_BUDGET_S = 2.0
POLL_CONCURRENCY = 10
UPSTREAM_MAX_BACKOFF_S = 600


@dataclass(frozen=True, slots=True)
class OrderView:
    id: str
    user_id: int
    telegram_id: int | None
    service: str
    country: str
    price: int
    cost: int | None
    status: str
    provider: str | None
    activation_id: str | None
    phone: str | None
    code: str | None
    can_request_another: bool
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    failure_reason: str | None
    upstream_state: str
    hold_transfer_id: str
    version: int
    upstream_attempts: int = 0
    chat_id: int | None = None
    message_id: int | None = None

    @property
    def is_open(self) -> bool:
        return self.status in (OrderStatus.RESERVING, OrderStatus.WAITING)


@dataclass(frozen=True, slots=True)
class OrderDetail:
    order: OrderView
    messages: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CancelResult:
    order: OrderView
    refunded: int  # minor units returned to the wallet by this call (0 if not by this call)
    already: bool = False  # the order was already cancelled before this call
    completed_instead: bool = False  # a code had arrived: the order completed, nothing refunded


_ORDER_COLUMNS = [c for c in orders.c] + [users.c.telegram_id]


def _view(row: Mapping[str, Any]) -> OrderView:
    return OrderView(
        id=row["id"], user_id=row["user_id"], telegram_id=row.get("telegram_id"),
        service=row["service"], country=row["country"], price=row["price"], cost=row["cost"],
        status=row["status"], provider=row["provider"], activation_id=row["activation_id"],
        phone=row["phone"], code=row["code"], can_request_another=bool(row["can_request_another"]),
        expires_at=row["expires_at"], created_at=row["created_at"], updated_at=row["updated_at"],
        closed_at=row["closed_at"], failure_reason=row["failure_reason"],
        upstream_state=row["upstream_state"], hold_transfer_id=row["hold_transfer_id"],
        version=row["version"], chat_id=row["chat_id"], message_id=row["message_id"],
        upstream_attempts=row["upstream_attempts"],
    )


_LOAD = (select(*_ORDER_COLUMNS).select_from(orders.join(users, users.c.id == orders.c.user_id))
         .where(orders.c.id == bindparam("order_id")))  # built once: every order screen reads it


async def _load(conn: AsyncConnection, order_id: str) -> OrderView | None:
    row = (await conn.execute(_LOAD, {"order_id": order_id})).mappings().one_or_none()
    return _view(row) if row else None


_VIEW_FIELDS = frozenset(OrderView.__dataclass_fields__)


def _with(order: OrderView, **changes: Any) -> OrderView:
    """The view after an UPDATE we just made, without reading the row back."""
    return replace(order, **{k: v for k, v in changes.items() if k in _VIEW_FIELDS})


def _message_id(msg: SmsMessage) -> str:
    return msg.message_id or f"code:{msg.code}:{msg.text}"[:128]


_BUYER = select(users.c.id, users.c.wallet_account_id, users.c.blocked,
                users.c.telegram_id).where(users.c.id == bindparam("user_id"))

# Compare-and-set of an order's status; the new column values come in as parameters.
_CAS = (update(orders)
        .where(orders.c.id == bindparam("b_id"), orders.c.status == bindparam("b_from"))
        .values(version=orders.c.version + 1))


_JOINED = orders.join(users, users.c.id == orders.c.user_id)
_IDS = bindparam("ids", expanding=True)
_LOAD_MANY = select(*_ORDER_COLUMNS).select_from(_JOINED).where(orders.c.id.in_(_IDS))
# Under a share lock (PostgreSQL; SQLite's writer is alone anyway): a concurrent transition
# of these orders waits for our commit, or we see its result.
_LOCK_MANY = _LOAD_MANY.with_for_update(read=True, of=orders)
_SEEN_MANY = (select(order_messages.c.order_id, order_messages.c.code, order_messages.c.text)
              .where(order_messages.c.order_id.in_(_IDS)))
# Newest first, built once: every My orders screen asks for a user's; filters (the
# dashboard's) are added per call.
_NEWEST = (select(*_ORDER_COLUMNS).select_from(_JOINED)
           .order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(bindparam("limit")))
_NEWEST_OF_USER = _NEWEST.where(orders.c.user_id == bindparam("user_id"))
_CHARGE = update(order_messages).where(order_messages.c.id.in_(_IDS)).values(charged=True)


def _event_row(
    order_id: str, event: str, source: str | None, target: str | None, actor: str,
    detail: dict[str, Any] | None, now: datetime,
) -> dict[str, Any]:
    return dict(order_id=order_id, event=event, from_status=source, to_status=target,
                actor=actor, detail=detail, created_at=now)


def _outbox_row(
    *, kind: str, chat_id: int, payload: dict[str, Any], dedupe_key: str, now: datetime,
    order_id: str | None = None,
) -> dict[str, Any]:
    """The row ``outbox.enqueue`` writes, for inserting many in one statement."""
    return dict(dedupe_key=dedupe_key, kind=kind, chat_id=chat_id, order_id=order_id,
                payload=payload, status=outbox.PENDING, attempts=0, next_attempt_at=now,
                created_at=now)


@dataclass(frozen=True, slots=True)
class _Checked:
    """What phase 1 read and validated before opening its write transaction."""

    user_id: int
    wallet_account_id: int
    telegram_id: int
    quote: Any
    candidates: list[tuple[str, int]]


DIRECT_CLOSE_GRACE_S = 60


def _after_direct_close(now: datetime) -> datetime:
    """When the retry job may take over an upstream cancel that the caller makes itself
    right after committing: only if that direct attempt never recorded an outcome (a crash),
    so a scheduler's retry cannot race it into a second cancel at the provider."""
    return now + timedelta(seconds=DIRECT_CLOSE_GRACE_S)


class _Retry(Exception):
    """Internal: roll the transaction back and run it again with fresh state."""


class OrderService:
    def __init__(
        self, db: Database, clock: Clock, providers: Mapping[str, Provider], settings: Settings,
        board: Any | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.providers = providers
        self.settings = settings
        self.board = board  # BreakerBoard: routing skips providers whose breaker is open

    # ----------------------------------------------------------------- reads
    async def get_order(self, order_id: str, *, user_id: int | None = None) -> OrderView:
        """The order; ``user_id`` restricts to its owner (a foreign order looks unknown)."""
        async with self.db.read() as conn:
            order = await _load(conn, order_id)
        if order is None or (user_id is not None and order.user_id != user_id):
            raise OrderNotFound(f"no order {order_id}")
        return order

    async def get_order_detail(self, order_id: str) -> OrderDetail:
        async with self.db.read() as conn:
            order = await _load(conn, order_id)
            if order is None:
                raise OrderNotFound(f"no order {order_id}")
            msgs = (await conn.execute(
                select(order_messages).where(order_messages.c.order_id == order_id)
                .order_by(order_messages.c.id))).mappings().all()
            events = (await conn.execute(
                select(order_events).where(order_events.c.order_id == order_id)
                .order_by(order_events.c.id))).mappings().all()
            xfers = (await conn.execute(
                select(transfers).where(transfers.c.order_id == order_id)
                .order_by(transfers.c.created_at, transfers.c.kind))).mappings().all()
        return OrderDetail(order, [dict(m) for m in msgs], [dict(e) for e in events],
                           [dict(t) for t in xfers])

    async def list_orders(
        self, *, user_id: int | None = None, status: str | None = None, limit: int = 20,
        before: tuple[datetime, str] | None = None,
    ) -> list[OrderView]:
        """Newest first; ``before`` is the (created_at, id) keyset cursor of the last row seen."""
        if status is not None and status not in {s.value for s in OrderStatus}:
            raise InvalidInput(f"unknown status {status!r}; use one of "
                               + ", ".join(s.value for s in OrderStatus))
        q = _NEWEST if user_id is None else _NEWEST_OF_USER
        if status is not None:
            q = q.where(orders.c.status == status)
        if before is not None:
            q = q.where(or_(orders.c.created_at < before[0],
                            and_(orders.c.created_at == before[0], orders.c.id < before[1])))
        async with self.db.read() as conn:
            rows = (await conn.execute(q, {"limit": limit, "user_id": user_id})).mappings().all()
        return [_view(r) for r in rows]

    # ------------------------------------------------------------- purchase
    async def purchase(
        self, *, user_id: int, quote_id: str, idempotency_key: str,
        chat_id: int | None = None, message_id: int | None = None,
    ) -> OrderView:
        """Buy the quoted number. Safe to call again with the same key: it buys once.

        Raises InsufficientFunds / QuoteExpired / QuoteNotFound / UserBlocked before any
        money moves, ``AlreadyInProgress`` while the first attempt with this key is still
        renting, and ``NoProviderAvailable`` after releasing the hold when no provider
        could supply a number. Returns the order (``waiting``, or ``reserving`` when the
        provider's answer was lost and recovery will settle it).
        """
        now = self.clock.now()
        fp = idempotency.fingerprint("purchase", user_id, quote_id)
        order_id = ledger.new_id()
        checked = None
        async with self.db.read() as conn:
            # Reads first, outside the write transaction, so the writer's lock covers only
            # the writes. A key already in use skips the checks: a retry after the quote
            # expired must still get its order back, not an error.
            if not await idempotency.exists(conn, idempotency_key):
                checked = await self._check_purchase(conn, user_id, quote_id, now)
        async with self.db.begin() as conn:
            # The key is stored as done with the order id: the order and its hold commit
            # with it, and from then on the order's own status says how far it got.
            prior = await idempotency.claim(
                conn, key=idempotency_key, scope="purchase", fingerprint=fp, now=now,
                result={"order_id": order_id})
            if prior is None:
                if checked is None:  # the key vanished (reaped) since we looked
                    checked = await self._check_purchase(conn, user_id, quote_id, now)
                order = await self._open_order(conn, order_id, checked, chat_id, message_id, now)
        if prior is not None:
            order = await self.get_order(prior["order_id"])
            if order.status == OrderStatus.RESERVING:
                raise AlreadyInProgress({"order_id": order.id})
            return order
        assert checked is not None
        return await self._rent(order, checked.candidates, actor="user")

    async def _check_purchase(
        self, conn: AsyncConnection, user_id: int, quote_id: str, now: datetime
    ) -> _Checked:
        from core import catalog  # imported here: catalog is a sibling service

        user = (await conn.execute(_BUYER, {"user_id": user_id})).one_or_none()
        if user is None:
            raise UserNotFound(f"no user {user_id}")
        if user.blocked:
            raise UserBlocked("this account is blocked")
        quote = await catalog.load_quote(conn, quote_id, user_id, now)
        candidates = await self._candidates(conn, quote.service, quote.country, quote.price)
        return _Checked(user.id, user.wallet_account_id, user.telegram_id, quote, candidates)

    async def _open_order(
        self, conn: AsyncConnection, order_id: str, checked: _Checked,
        chat_id: int | None, message_id: int | None, now: datetime,
    ) -> OrderView:
        """Phase 1: place the hold and insert the order as ``reserving``."""
        quote = checked.quote
        hold_id = ledger.derived_id("hold", order_id)
        revenue = await ledger.system_account(conn, ledger.REVENUE, spread=order_id)
        await ledger.create_hold(
            conn, id=hold_id, debit=checked.wallet_account_id, credit=revenue,
            amount=quote.price, order_id=order_id, now=now,
            timeout_at=now + timedelta(seconds=self.settings.ORDER_MAX_TTL_SECONDS
                                       + self.settings.HOLD_GRACE_SECONDS))
        values = dict(
            id=order_id, user_id=checked.user_id, quote_id=quote.id, service=quote.service,
            country=quote.country, price=quote.price, status=OrderStatus.RESERVING.value,
            version=1, hold_transfer_id=hold_id,
            provider=checked.candidates[0][0] if checked.candidates else None,
            upstream_state="none", upstream_attempts=0, can_request_another=False,
            chat_id=chat_id if chat_id is not None else checked.telegram_id,
            message_id=message_id, created_at=now, updated_at=now)
        await conn.execute(orders.insert(), values)
        await self._event(conn, order_id, "created", None, OrderStatus.RESERVING,
                          "user", {"price": quote.price, "quote_id": quote.id}, now)
        return _view({**{c.name: None for c in orders.c}, **values,
                      "telegram_id": checked.telegram_id})

    async def _candidates(
        self, conn: AsyncConnection, service: str, country: str, max_cost: int
    ) -> list[tuple[str, int]]:
        """Providers able to sell this now, cheapest first, in PROVIDERS order on a tie."""
        from core import catalog

        offers = await catalog.candidate_offers(conn, service, country, max_cost,
                                                providers=list(self.providers))
        return [(o.provider, o.cost) for o in offers]

    def _available(self, name: str) -> bool:
        return self.board is None or self.board.is_available(name)

    async def _rent(
        self, order: OrderView, candidates: list[tuple[str, int]], *, actor: str
    ) -> OrderView:
        """Phase 2 and 3: try providers in turn inside the one hold; no transaction open
        while a provider is called."""
        order_id = order.id
        reasons: list[str] = []
        tried: list[str] = []
        for name, _cost in candidates:
            if not self._available(name):
                reasons.append("unavailable")
                continue
            if order.provider != name:
                async with self.db.begin() as conn:
                    moved = await conn.execute(
                        update(orders).where(orders.c.id == order_id,
                                             orders.c.status == OrderStatus.RESERVING)
                        .values(provider=name, updated_at=self.clock.now()))
                if moved.rowcount != 1:
                    return await self.get_order(order_id)  # someone else settled it
                order = _with(order, provider=name)
            tried.append(name)
            request = RentRequest(order.service, order.country, max_cost=order.price,
                                  idempotency_key=order_id)
            try:
                rental = await self.providers[name].rent(request)
            except OutcomeUnknown as exc:
                log.warning("order %s: outcome of rent at %s unknown (%s); recovery will settle it",
                            order_id, name, exc)
                await self._note(order_id, "rent_unknown", {"provider": name, "error": str(exc)})
                return await self.get_order(order_id)
            except (OutOfStock, PriceTooHigh) as exc:
                reasons.append("out_of_stock" if isinstance(exc, OutOfStock) else "price")
                continue
            except AccountError as exc:
                reasons.append("unavailable")
                await self._alert(f"provider {name} account problem: {exc}", f"account:{name}")
                continue
            except (BusinessError, TransientError) as exc:
                reasons.append("unavailable")
                log.info("order %s: %s refused or failed (%s); trying the next provider",
                         order_id, name, exc)
                continue
            return await self._assign(order, name, rental, actor=actor)
        reason = ("out_of_stock" if reasons and all(r == "out_of_stock" for r in reasons)
                  else "price" if reasons and all(r == "price" for r in reasons)
                  else "unavailable" if reasons else "out_of_stock")
        failed = await self.fail(order_id, reason=f"no provider could supply a number: {reason}",
                                 actor=actor, notify=actor != "user",
                                 detail={"tried": tried, "reasons": reasons})
        raise NoProviderAvailable(reason, order_id=failed.id)

    async def _assign(self, order: OrderView, provider: str, rental: Rental, *, actor: str) -> OrderView:
        """Phase 3 on success: ``reserving`` → ``waiting`` with the number."""
        now = self.clock.now()
        cap = order.created_at + timedelta(seconds=self.settings.ORDER_MAX_TTL_SECONDS)
        values = dict(
            provider=provider, activation_id=rental.activation_id, phone=rental.phone,
            cost=rental.cost, expires_at=min(rental.expires_at, cap),
            can_request_another=rental.can_request_another, upstream_state="active",
            next_poll_at=now + timedelta(seconds=self.settings.SMS_POLL_INTERVAL_SECONDS))
        reserving = _with(order, status=OrderStatus.RESERVING.value)
        async with self.db.begin() as conn:
            won = await self._apply(conn, reserving, OrderEvent.RENTED, actor=actor, now=now,
                                    values=values, detail={"provider": provider,
                                                           "activation_id": rental.activation_id},
                                    notify=actor != "user")
            if not won:
                current = await _load(conn, order.id)
        if won:
            return _with(order, status=OrderStatus.WAITING.value, version=order.version + 1,
                         updated_at=now, **values)
        assert current is not None
        if current.provider == provider and current.activation_id == rental.activation_id:
            # Another recovery of this order got the same rental (idempotent rent) first:
            # it is the order's number now, not an orphan.
            return current
        # The order was settled while we were renting (recovery or staff): nobody owns
        # this rental, so give it back at once rather than pay for it.
        log.warning("order %s settled during rent; cancelling orphan %s at %s",
                    order.id, rental.activation_id, provider)
        await self._cancel_upstream_quietly(provider, rental.activation_id)
        assert current is not None
        return current

    # --------------------------------------------------------------- codes
    async def record_messages(
        self, order_id: str, messages: Iterable[SmsMessage], *, actor: str = "scheduler"
    ) -> OrderView:
        """Record SMS for an order; the first code completes it and captures the hold.

        Messages are stored once each. Codes after completion are recorded and forwarded
        without charge; codes after a refund are recorded and never delivered (the user
        got their money back, so the shop does not give the code away).
        """
        (order,) = await self.record_many([(order_id, messages)], actor=actor)
        if order is None:
            raise OrderNotFound(f"no order {order_id}")
        return order

    async def record_many(
        self, items: Iterable[tuple[str, Iterable[SmsMessage]]], *, actor: str = "scheduler",
    ) -> list[OrderView | None]:
        """``record_messages`` for many orders in one write transaction.

        The poller records a whole round's codes this way: one commit and one move of each
        account (the revenue row above all, which every capture touches) instead of one per
        order. Each order ends exactly as ``record_messages`` would leave it; its view comes
        back in its position (None for an unknown order). All or nothing: if any order's
        writes fail, nothing of the batch is written.
        """
        items = [(order_id, list(messages)) for order_id, messages in items]
        batch: dict[str, list[SmsMessage]] = {}
        for order_id, messages in items:
            batch.setdefault(order_id, []).extend(messages)
        while True:
            try:
                views = await self._record_once(batch, actor=actor)
                break
            except _Retry:
                continue  # the transaction rolled back whole; read the orders again
        return [views.get(order_id) for order_id, _ in items]

    async def _record_once(
        self, batch: dict[str, list[SmsMessage]], *, actor: str
    ) -> dict[str, OrderView]:
        now = self.clock.now()
        ids = list(batch)
        views: dict[str, OrderView] = {}
        seen: dict[str, set[tuple[str | None, str | None]]] = defaultdict(set)
        # Read before the write transaction, so the writer's lock covers only the writes: if
        # an order moves meanwhile, its compare-and-set fails and the attempt is retried.
        async with self.db.read() as conn:
            for chunk in _chunks(ids, SQL_IN_CHUNK):
                views.update((r["id"], _view(r)) for r in
                             (await conn.execute(_LOAD_MANY, {"ids": chunk})).mappings())
                # The same SMS can reach us twice under different ids (a provider webhook
                # carries none, the poller sees the provider's); same code and text is the
                # same message.
                for order_id, code, text in await conn.execute(_SEEN_MANY, {"ids": chunk}):
                    seen[order_id].add((code, text))
        todo: list[tuple[OrderView, list[SmsMessage]]] = []
        for order_id, messages in batch.items():
            fresh = [m for m in messages if (m.code, m.text) not in seen[order_id]]
            if order_id in views and fresh:
                todo.append((views[order_id], fresh))
        if todo:
            async with self.db.begin() as conn:
                views.update(await self._record_in(conn, todo, actor=actor, now=now))
        # Finishing upstream is left to retry_upstream: never a network call on the code's path.
        return views

    async def _record_in(
        self, conn: AsyncConnection, todo: list[tuple[OrderView, list[SmsMessage]]], *,
        actor: str, now: datetime,
    ) -> dict[str, OrderView]:
        """The writes of ``_record_once``: a fixed number of statements for the whole batch
        plus one compare-and-set per order that a code completes. Order rows are locked
        first (in id order), the accounts last, as in every other transition."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for order, messages in todo:
            for msg in messages:
                # A second message under the same id is refused, as the unique constraint
                # refuses it in a later transaction.
                rows.setdefault((order.id, _message_id(msg)), dict(
                    order_id=order.id, provider_message_id=_message_id(msg), code=msg.code,
                    text=msg.text, charged=False, received_at=msg.received_at or now))
        # In key order, so that two batches with messages in common (two pollers after a
        # lease ran out) wait for each other on the first shared key instead of deadlocking.
        inserted = {(r.order_id, r.provider_message_id): r.id for r in await conn.execute(
            insert_ignore(conn, order_messages).returning(
                order_messages.c.id, order_messages.c.order_id,
                order_messages.c.provider_message_id), [rows[k] for k in sorted(rows)])}
        captures: list[tuple[OrderView, SmsMessage, int]] = []  # order, its code, message row
        extras: list[tuple[OrderView, list[SmsMessage]]] = []  # codes after the charged one
        for order, messages in todo:
            coded: list[SmsMessage] = []
            keys: set[str] = set()
            for msg in messages:
                key = _message_id(msg)
                if key not in keys:
                    keys.add(key)
                    if msg.code and (order.id, key) in inserted:
                        coded.append(msg)
            if coded and order.status == OrderStatus.WAITING:
                # The first new code of a waiting order is the one the user pays for: it is
                # marked charged and captured in this transaction, or neither happens.
                first = coded.pop(0)
                captures.append((order, first, inserted[(order.id, _message_id(first))]))
            if coded:
                extras.append((order, coded))

        t = transition(OrderStatus.WAITING, OrderEvent.CODE)
        after: dict[str, OrderView] = {}
        events: list[dict[str, Any]] = []
        notes: list[dict[str, Any]] = []
        for order, msg, _row in sorted(captures, key=lambda c: c[0].id):
            values = dict(code=msg.code, upstream_state="finish_pending", upstream_retry_at=now,
                          next_poll_at=None)
            if not await self._cas(conn, order, t, now, values):
                raise _Retry()  # lost a race (PostgreSQL): someone else moved the order first
            events.append(_event_row(order.id, t.event.value, t.source, t.target, actor,
                                     {"code": msg.code}, now))
            # The code goes out as its own message whoever found it. The order's message is
            # left to the caller when the user's own tap found the code (Check now, Cancel's
            # last look): the bot redraws that screen with its answer, as it does for every
            # transition a user drives, and a second edit from the sender would only repeat it.
            note = self._notice(order, t, now, values, {"code": msg.code, "text": msg.text,
                                                        "screen_shown": actor == "user"}, 0)
            if note is not None:
                notes.append(_outbox_row(**note))
            after[order.id] = _with(order, status=t.target.value, version=order.version + 1,
                                    updated_at=now, closed_at=order.closed_at or now, **values)
        # Codes after the charged one go to the user free of charge while the order stays
        # completed. Its status is read again under a share lock, so a staff refund cannot
        # commit between this look and the notification's commit: a code that arrives after
        # a refund is kept and never sent.
        others = [o.id for o, _ in extras if o.id not in after and o.status == OrderStatus.COMPLETED]
        for chunk in _chunks(others, SQL_IN_CHUNK):
            after.update((r["id"], _view(r)) for r in
                         (await conn.execute(_LOCK_MANY, {"ids": chunk})).mappings())
        for order, coded in extras:
            current = after.get(order.id)
            if current is None or current.status != OrderStatus.COMPLETED:
                continue
            notes += [_outbox_row(
                kind="code_extra", chat_id=current.chat_id or current.telegram_id or 0,
                order_id=order.id, now=now, dedupe_key=f"order:{order.id}:msg:{_message_id(msg)}",
                payload=self._payload(current, code=msg.code, text=msg.text)) for msg in coded]
        if captures:
            await conn.execute(_CHARGE, {"ids": [row for _o, _m, row in captures]})
            await conn.execute(order_events.insert(), events)
        if notes:
            await conn.execute(insert_ignore(conn, outbox_t), notes)
        if captures:
            # Last, so the accounts (the revenue row, which every capture moves) stay locked
            # only for the commit.
            await ledger.post_holds(conn, [o.hold_transfer_id for o, _m, _r in captures], now)
        return after

    async def check_now(self, order_id: str, *, user_id: int | None = None) -> OrderView:
        """Ask the provider once for this order's messages (the user's Check now button)."""
        order = await self.get_order(order_id, user_id=user_id)
        if order.status not in (OrderStatus.WAITING, OrderStatus.COMPLETED) or not order.activation_id:
            return order
        status = await self.providers[order.provider or ""].status(order.activation_id)
        return await self._apply_status(order, status, actor="user")

    async def request_another_code(self, order_id: str, *, user_id: int | None = None) -> OrderView:
        order = await self.get_order(order_id, user_id=user_id)
        if not order.can_request_another or order.status != OrderStatus.COMPLETED or not order.activation_id:
            raise OrderStateConflict(order.id, order.status, "request another code")
        await self.providers[order.provider or ""].request_another_code(order.activation_id)
        now = self.clock.now()
        async with self.db.begin() as conn:
            await conn.execute(update(orders).where(orders.c.id == order_id).values(
                next_poll_at=now, upstream_state="active", updated_at=now))
            await self._event(conn, order_id, "another_code", order.status, order.status,
                              "user", None, now)
        return await self.get_order(order_id)

    async def _apply_status(self, order: OrderView, status: ActivationStatus, *, actor: str) -> OrderView:
        if status.messages:
            order = await self.record_messages(order.id, status.messages, actor=actor)
        return await self._fail_if_closed(order, status, actor=actor)

    async def _fail_if_closed(
        self, order: OrderView, status: ActivationStatus, *, actor: str
    ) -> OrderView:
        if (order.status == OrderStatus.WAITING
                and status.state in (ActivationState.CANCELLED, ActivationState.EXPIRED)):
            # Closed upstream without a code: the user must not pay for it.
            order = await self.fail(order.id, reason=f"provider closed the activation ({status.state})",
                                    actor=actor, upstream_state="cancelled")
        return order

    # ------------------------------------------------------------- cancel
    async def cancel(
        self, order_id: str, *, user_id: int | None = None, actor: str = "user",
        reason: str | None = None,
    ) -> CancelResult:
        """Cancel and refund at once; the upstream cancel follows and is retried if denied.

        A second cancel returns ``already=True`` and refunds nothing. If a code arrived in
        the meantime the order completes instead (``completed_instead=True``).
        """
        order = await self.get_order(order_id, user_id=user_id)
        if order.status == OrderStatus.CANCELLED:
            return CancelResult(order, 0, already=True)
        if order.status == OrderStatus.RESERVING and actor == "user":
            raise OrderStateConflict(order.id, order.status, "cancel yet")
        if order.status not in (OrderStatus.WAITING, OrderStatus.RESERVING):
            raise OrderStateConflict(order.id, order.status, "cancel")
        if order.status == OrderStatus.WAITING:
            checked = await self._final_check(order, actor=actor)
            if checked.status == OrderStatus.COMPLETED:
                return CancelResult(checked, 0, completed_instead=True)
            order = checked
        now = self.clock.now()
        values = dict(upstream_state="cancel_pending" if order.activation_id else "none",
                      upstream_retry_at=_after_direct_close(now), next_poll_at=None)
        async with self.db.begin() as conn:
            # CAS from the status we read: if it moved since, nothing is written here.
            won = await self._apply(
                conn, order, OrderEvent.CANCEL, actor=actor, now=now, values=values,
                detail={"reason": reason} if reason else None, notify=actor != "user")
            if won and actor != "user":
                from core import audit

                await audit.record(conn, actor=actor, action="order.cancel", target_type="order",
                                   target_id=order_id, reason=reason,
                                   detail={"refunded": order.price}, now=now)
            after = None if won else await _load(conn, order_id)
        if after is not None:
            if after.status == OrderStatus.CANCELLED:
                return CancelResult(after, 0, already=True)
            if after.status == OrderStatus.COMPLETED:
                return CancelResult(after, 0, completed_instead=True)
            raise OrderStateConflict(after.id, after.status, "cancel")
        after = _with(order, status=OrderStatus.CANCELLED.value, version=order.version + 1,
                      updated_at=now, closed_at=order.closed_at or now, **values)
        if after.activation_id:
            after = _with(after, **await self._close_upstream(after))
        return CancelResult(after, after.price)

    async def _final_check(self, order: OrderView, *, actor: str) -> OrderView:
        """One last look for a code before money goes back, within a short budget."""
        if not order.activation_id or order.provider not in self.providers:
            return order
        try:
            status = await asyncio.wait_for(
                self.providers[order.provider].status(order.activation_id), FINAL_CHECK_BUDGET_S)
        except (ProviderError, TimeoutError) as exc:
            log.info("order %s: final check failed (%s); proceeding", order.id, exc)
            return order
        if status.messages:
            return await self.record_messages(order.id, status.messages, actor=actor)
        return order

    # -------------------------------------------------------- expire, fail
    async def expire(self, order_id: str, *, actor: str = "scheduler") -> OrderView:
        order = await self.get_order(order_id)
        if order.status != OrderStatus.WAITING:
            return order
        order = await self._final_check(order, actor=actor)
        if order.status != OrderStatus.WAITING:
            return order
        now = self.clock.now()
        async with self.db.begin() as conn:
            current = await _load(conn, order_id)
            assert current is not None
            won = current.status == OrderStatus.WAITING and await self._apply(
                conn, current, OrderEvent.EXPIRE, actor=actor, now=now,
                values=dict(upstream_state="cancel_pending", upstream_retry_at=_after_direct_close(now),
                            next_poll_at=None), notify=True)
            after = await _load(conn, order_id)
        assert after is not None
        if won:
            await self._close_upstream(after)
        return await self.get_order(order_id)

    async def fail(
        self, order_id: str, *, reason: str, actor: str = "system", notify: bool = True,
        detail: dict[str, Any] | None = None, upstream_state: str | None = None,
    ) -> OrderView:
        now = self.clock.now()
        async with self.db.begin() as conn:
            current = await _load(conn, order_id)
            if current is None:
                raise OrderNotFound(f"no order {order_id}")
            if current.status in (OrderStatus.RESERVING, OrderStatus.WAITING):
                upstream = upstream_state or ("cancel_pending" if current.activation_id else "none")
                await self._apply(
                    conn, current, OrderEvent.FAIL, actor=actor, now=now,
                    values=dict(failure_reason=reason[:255], upstream_state=upstream,
                                upstream_retry_at=_after_direct_close(now), next_poll_at=None),
                    detail={"reason": reason, **(detail or {})}, notify=notify)
            after = await _load(conn, order_id)
        assert after is not None
        if after.upstream_state == "cancel_pending" and current.status != after.status:
            await self._close_upstream(after)
            after = await self.get_order(order_id)
        return after

    # -------------------------------------------------------------- staff
    async def staff_refund(
        self, order_id: str, *, actor: str, reason: str, idempotency_key: str | None = None,
    ) -> OrderView:
        """Return a completed order's price to the wallet (revenue → wallet, posted)."""
        from core import audit

        if not reason or not reason.strip():
            raise InvalidInput("a reason is required")
        now = self.clock.now()
        async with self.db.begin() as conn:
            order = await _load(conn, order_id)
            if order is None:
                raise OrderNotFound(f"no order {order_id}")
            if order.status == OrderStatus.REFUNDED:
                return order
            if order.status != OrderStatus.COMPLETED:
                raise OrderStateConflict(order.id, order.status, "refund (only completed orders)")
            won = await self._apply(conn, order, OrderEvent.REFUND, actor=actor, now=now,
                                    detail={"reason": reason}, notify=True)
            if won:
                await audit.record(conn, actor=actor, action="order.refund", target_type="order",
                                   target_id=order_id, reason=reason,
                                   detail={"amount": order.price,
                                           "idempotency_key": idempotency_key}, now=now)
            after = await _load(conn, order_id)
        assert after is not None
        return after

    # ------------------------------------------------------ transitions
    async def _apply(
        self, conn: AsyncConnection, order: OrderView, event: OrderEvent, *, actor: str,
        now: datetime, values: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None, notify: bool = False,
        payload: dict[str, Any] | None = None,
    ) -> bool:
        """Compare-and-set the transition with its ledger effect, event and notification.
        False means another writer moved the order first; nothing was changed."""
        t: Transition = transition(order.status, event)
        if not await self._cas(conn, order, t, now, values or {}):
            return False
        refunded = 0
        if t.effect == LedgerEffect.CAPTURE:
            await ledger.post_hold(conn, order.hold_transfer_id, now)
        elif t.effect == LedgerEffect.RELEASE:
            await ledger.void_hold(conn, order.hold_transfer_id, now)
            refunded = order.price
        elif t.effect == LedgerEffect.REFUND:
            wallet = await conn.scalar(select(users.c.wallet_account_id)
                                       .where(users.c.id == order.user_id))
            revenue = await ledger.system_account(conn, ledger.REVENUE, spread=order.id)
            await ledger.post_transfer(
                conn, id=ledger.derived_id("refund", order.id), debit=revenue, credit=wallet,
                amount=order.price, code="refund", order_id=order.id, now=now,
                memo=(detail or {}).get("reason"))
            refunded = order.price
        await self._event(conn, order.id, event.value, t.source, t.target, actor, detail, now)
        note = self._notice(order, t, now, values or {}, payload, refunded) if notify else None
        if note is not None:
            await outbox.enqueue(conn, **note)
        return True

    async def _cas(
        self, conn: AsyncConnection, order: OrderView, t: Transition, now: datetime,
        values: dict[str, Any],
    ) -> bool:
        """The compare-and-set of ``t`` on the order row: False if it is no longer in
        ``t.source`` (another writer moved it first) and nothing was changed."""
        params = {"b_id": order.id, "b_from": t.source.value, "status": t.target.value,
                  "updated_at": now, **values}
        if t.target not in (OrderStatus.RESERVING, OrderStatus.WAITING) and order.closed_at is None:
            params["closed_at"] = now
        res = await conn.execute(_CAS, params)
        return res.rowcount == 1

    def _notice(
        self, order: OrderView, t: Transition, now: datetime, values: dict[str, Any],
        payload: dict[str, Any] | None, refunded: int,
    ) -> dict[str, Any] | None:
        """The user's notification of a transition (``outbox.enqueue`` arguments), deduped
        per order and target status; None when the order has no chat to tell."""
        chat = order.chat_id or order.telegram_id
        if not chat:
            return None
        body = self._payload(order, **{**values, **(payload or {}),
                                       "status": t.target.value, "refunded": refunded})
        return dict(kind=t.target.value, chat_id=chat, order_id=order.id, payload=body, now=now,
                    dedupe_key=f"order:{order.id}:{t.target.value}")

    def _payload(self, order: OrderView, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "order_id": order.id, "service": order.service, "country": order.country,
            "phone": order.phone, "price": order.price, "currency": self.settings.SHOP_CURRENCY,
            "message_id": order.message_id,
        }
        for key, value in extra.items():
            if isinstance(value, datetime):
                value = value.isoformat()
            if key in ("code", "text", "status", "refunded", "phone", "expires_at",
                       "failure_reason", "activation_id", "screen_shown"):
                body[key] = value
        return body

    async def _event(
        self, conn: AsyncConnection, order_id: str, event: str, source: str | None,
        target: str | None, actor: str, detail: dict[str, Any] | None, now: datetime,
    ) -> None:
        await conn.execute(order_events.insert(),
                           _event_row(order_id, event, source, target, actor, detail, now))

    async def _note(self, order_id: str, event: str, detail: dict[str, Any]) -> None:
        async with self.db.begin() as conn:
            await self._event(conn, order_id, event, None, None, "system", detail, self.clock.now())

    async def _alert(self, text: str, dedupe: str) -> None:
        """Queue a staff alert (one per dedupe key per hour) when STAFF_CHAT_ID is set."""
        chat = self.settings.STAFF_CHAT_ID
        if chat is None:
            log.warning("staff alert: %s", text)
            return
        now = self.clock.now()
        async with self.db.begin() as conn:
            await outbox.enqueue(conn, kind="staff_alert", chat_id=chat, payload={"text": text},
                                 now=now, dedupe_key=f"alert:{dedupe}:{now:%Y%m%d%H}")

    # ---------------------------------------------------------- upstream
    async def _cancel_upstream_quietly(self, provider: str, activation_id: str) -> None:
        try:
            await self.providers[provider].cancel(activation_id)
        except ProviderError as exc:
            log.warning("cancel of orphan %s at %s failed: %s (the orphan sweep will retry)",
                        activation_id, provider, exc)

    async def _close_upstream(self, order: OrderView) -> dict[str, Any]:
        """Cancel (or finish) the activation upstream; on failure schedule a retry.
        Returns the upstream columns it wrote."""
        if not order.activation_id or order.provider not in self.providers:
            return {}
        finishing = order.upstream_state == "finish_pending"
        provider = self.providers[order.provider]
        now = self.clock.now()
        try:
            if finishing:
                await provider.finish(order.activation_id)
            else:
                await provider.cancel(order.activation_id)
            done = {"upstream_state": "finished" if finishing else "cancelled",
                    "upstream_retry_at": None}
        except AlreadyClosed:
            done = {"upstream_state": "finished" if finishing else "cancelled",
                    "upstream_retry_at": None}
        except EarlyCancelDenied as exc:
            done = {"upstream_retry_at": exc.retry_at or now + timedelta(seconds=60)}
        except ProviderError as exc:
            backoff = min(UPSTREAM_MAX_BACKOFF_S, 15 * 2 ** min(order.upstream_attempts, 6))
            log.info("upstream close of %s failed (%s); retry in %ss", order.id, exc, backoff)
            done = {"upstream_retry_at": now + timedelta(seconds=backoff)}
        async with self.db.begin() as conn:
            await conn.execute(
                update(orders).where(orders.c.id == order.id,
                                     orders.c.upstream_state == order.upstream_state)
                .values(upstream_attempts=orders.c.upstream_attempts + 1, **done))
        return {**done, "upstream_attempts": order.upstream_attempts + 1}

    async def retry_upstream(self, *, owner: str | None = None, limit: int = 100) -> int:
        """Retry pending upstream cancels and finishes that are due, each claimed with a
        lease so two schedulers never call the provider twice for one. ``_close_upstream``
        backs off exponentially and honours an early-cancel window's retry time. Returns
        how many were attempted."""
        owner = owner or self.worker_id
        now = self.clock.now()
        ids = await jobs.claim_orders(
            self.db, owner=owner, now=now,
            due=(orders.c.upstream_state.in_(("cancel_pending", "finish_pending")),
                 or_(orders.c.upstream_retry_at.is_(None), orders.c.upstream_retry_at <= now)),
            order_by=(orders.c.upstream_retry_at,), limit=limit)

        async def close(order_id: str) -> None:
            order = await self.get_order(order_id)
            if order.upstream_state in ("cancel_pending", "finish_pending"):
                await self._close_upstream(order)

        await self._each(ids, close, owner=owner)
        return len(ids)

    # ---------------------------------------------------- scheduled work
    # Each job claims the orders it works on with a lease (core.jobs), so two scheduler
    # processes split the work instead of repeating it. The transitions the jobs apply are
    # compare-and-set regardless, so even overlapping work never moves money twice; leases
    # only spare the duplicate provider calls. A worker that dies holding a lease loses it
    # at ``lease_until`` and the next claimer finishes the work.

    @property
    def worker_id(self) -> str:
        """This service's lease-owner name, unique per instance."""
        wid = self.__dict__.get("_worker_id")
        if wid is None:
            wid = self.__dict__["_worker_id"] = jobs.new_owner()
        return wid

    async def _each(
        self, ids: list[str], work: Any, *, owner: str, concurrency: int = POLL_CONCURRENCY,
    ) -> list[Any]:
        """Run ``work(order_id)`` over claimed orders with bounded concurrency, then end the
        leases. One order's failure is logged and does not stop the others. (A crash — a
        BaseException — leaves the leases to expire, as a dead process would.)"""
        sem = asyncio.Semaphore(concurrency)

        async def one(order_id: str) -> Any:
            async with sem:
                try:
                    return await work(order_id)
                except Exception:
                    log.exception("scheduled work on order %s failed; it will be retried", order_id)
                    return None

        results = await asyncio.gather(*(one(i) for i in ids))
        await jobs.release_orders(self.db, ids, owner)
        return list(results)

    def _next_poll_at(self, now: datetime, tick_seconds: float) -> Any:
        """When a just-claimed order is due again: every poll interval while it is young,
        less often as it ages (most codes arrive in the first minutes). One ticker period
        early, so that with discrete ticks the gap between two polls never exceeds it."""
        interval = self.settings.SMS_POLL_INTERVAL_SECONDS
        slack = min(max(tick_seconds, 0.0), interval / 2)
        steps = [(age, now + timedelta(seconds=max(interval * factor - slack, 0.1)))
                 for age, factor in POLL_BACKOFF]
        last = now + timedelta(seconds=max(min(interval * POLL_BACKOFF_MAX_FACTOR,
                                                max(interval, POLL_BACKOFF_CAP_S)) - slack, 0.1))
        return case(*((orders.c.created_at > now - timedelta(seconds=age), literal(at, UTCDateTime()))
                      for age, at in steps), else_=literal(last, UTCDateTime()))

    def _poll_due_where(self, now: datetime) -> list[Any]:
        return [
            orders.c.next_poll_at <= now,
            or_(orders.c.status == OrderStatus.WAITING,
                and_(orders.c.status == OrderStatus.COMPLETED, orders.c.expires_at > now)),
        ]

    async def poll_due(
        self, *, owner: str | None = None, limit: int = 1000, tick_seconds: float = 0.0,
        max_rounds: int = 50,
    ) -> int:
        """Poll every order whose ``next_poll_at`` has come, in claimed batches of ``limit``,
        rescheduling each in the claim itself. Returns how many orders got their first code.

        ``tick_seconds`` is the poll ticker's period (see ``_next_poll_at``). Each round's lease
        ends when the round is done; if the poller dies mid-round, it ends when the orders
        are due again, and whoever polls next takes them."""
        owner = owner or self.worker_id
        rounds: set[asyncio.Task[int]] = set()
        recorded = 0
        try:
            for _ in range(max_rounds):
                now = self.clock.now()
                due_again = self._next_poll_at(now, tick_seconds)
                ids = await jobs.claim_orders(
                    self.db, owner=owner, now=now, due=self._poll_due_where(now),
                    order_by=(orders.c.next_poll_at,), limit=limit,
                    values={"next_poll_at": due_again, "lease_until": due_again})
                if not ids:
                    break
                # Rounds overlap (a few at a time): the next batch is claimed and fetched
                # while the codes of the previous one are still being written.
                rounds.add(asyncio.create_task(self.poll_orders(ids, owner=owner)))
                if len(rounds) >= POLL_ROUNDS_IN_FLIGHT:
                    done, rounds = await asyncio.wait(rounds, return_when=asyncio.FIRST_COMPLETED)
                    recorded += sum(t.result() for t in done)
                if len(ids) < limit:
                    break
            recorded += sum(await asyncio.gather(*rounds))
        finally:
            for task in rounds:
                task.cancel()
        return recorded

    async def poll_orders(self, order_ids: Iterable[str], *, owner: str | None = None) -> int:
        """Fetch status for these orders, one batch call per provider where the protocol
        allows, otherwise bounded concurrency; record new messages. Returns how many orders
        got their first code. With ``owner``, that owner's leases on these orders end once
        they are polled, so expiry or an upstream retry can take them at once."""
        ids = list(order_ids)
        rows: list[Any] = []
        async with self.db.read() as conn:
            for chunk in _chunks(ids, SQL_IN_CHUNK):
                rows += (await conn.execute(
                    select(*_ORDER_COLUMNS).select_from(orders.join(users, users.c.id == orders.c.user_id))
                    .where(orders.c.id.in_(chunk)))).mappings().all()
        by_provider: dict[str, list[OrderView]] = defaultdict(list)
        for row in rows:
            order = _view(row)
            if order.activation_id and order.provider in self.providers:
                by_provider[order.provider].append(order)
        results = await asyncio.gather(*(self._poll_provider(name, group)
                                         for name, group in by_provider.items()))
        if owner is not None:
            await jobs.release_orders(self.db, ids, owner)
        return sum(results)

    async def _fetch_statuses(self, name: str, group: list[OrderView]) -> dict[str, ActivationStatus]:
        provider = self.providers[name]
        aids = [o.activation_id for o in group if o.activation_id]
        if provider.capabilities.batch_status:
            try:
                return await provider.batch_status(aids)
            except ProviderError as exc:
                log.info("batch status of %d activations at %s failed: %s", len(aids), name, exc)
                return {}
        statuses: dict[str, ActivationStatus] = {}
        sem = asyncio.Semaphore(POLL_CONCURRENCY)

        async def one(aid: str) -> None:
            async with sem:
                try:
                    statuses[aid] = await provider.status(aid)
                except ProviderError as exc:
                    log.info("status of %s at %s failed: %s", aid, name, exc)

        await asyncio.gather(*(one(a) for a in aids))
        return statuses

    async def _known_messages(self, order_ids: list[str]) -> set[tuple[str, str]]:
        known: set[tuple[str, str]] = set()
        if not order_ids:
            return known
        async with self.db.read() as conn:
            for chunk in _chunks(order_ids, SQL_IN_CHUNK):
                known.update((r[0], r[1]) for r in await conn.execute(
                    select(order_messages.c.order_id, order_messages.c.provider_message_id)
                    .where(order_messages.c.order_id.in_(chunk))))
        return known

    async def _poll_provider(self, name: str, group: list[OrderView]) -> int:
        statuses = await self._fetch_statuses(name, group)
        if not statuses:
            return 0
        with_messages = [o.id for o in group
                         if (s := statuses.get(o.activation_id or "")) is not None and s.messages]
        known = await self._known_messages(with_messages)
        finished_upstream: list[str] = []
        changed: list[tuple[OrderView, ActivationStatus]] = []
        for order in group:
            status = statuses.get(order.activation_id or "")
            if status is None:
                continue  # unknown upstream right now: polled again later, reconciled if it lasts
            fresh = tuple(m for m in status.messages if (order.id, _message_id(m)) not in known)
            closed = status.state not in (ActivationState.WAITING, ActivationState.CODE)
            if closed and order.status == OrderStatus.COMPLETED and not fresh:
                finished_upstream.append(order.id)
            elif fresh or (closed and order.status == OrderStatus.WAITING):
                changed.append((order, replace(status, messages=fresh)))
        recorded = await self._record_polled([(o, s) for o, s in changed if s.messages])
        sem = asyncio.Semaphore(APPLY_CONCURRENCY)

        async def settle(order: OrderView, status: ActivationStatus) -> OrderView | None:
            if status.messages:
                current = recorded.get(order.id)
                if current is None:
                    return None  # not recorded (logged): polled again later
                order = current
            async with sem:
                try:
                    return await self._fail_if_closed(order, status, actor="scheduler")
                except Exception:
                    log.exception("order %s: recording its status failed; polled again later",
                                  order.id)
                    return None

        afters = await asyncio.gather(*(settle(o, s) for o, s in changed))
        first_codes = sum(1 for (before, _), after in zip(changed, afters, strict=True)
                          if after is not None and before.status == OrderStatus.WAITING
                          and after.status == OrderStatus.COMPLETED)
        if finished_upstream:
            # Closed upstream after its code: nothing more can arrive, stop polling it.
            async with self.db.begin() as conn:
                await conn.execute(update(orders).where(
                    orders.c.id.in_(finished_upstream), orders.c.status == OrderStatus.COMPLETED)
                    .values(next_poll_at=None))
        return first_codes

    async def _record_polled(
        self, polled: list[tuple[OrderView, ActivationStatus]]
    ) -> dict[str, OrderView | None]:
        """Record a round's new messages, ``RECORD_BATCH`` orders per transaction. If a batch
        fails as a whole, its orders are recorded one by one, so one bad order (or a
        deadlock victim) holds back no other; an order that fails alone maps to None."""
        recorded: dict[str, OrderView | None] = {}
        for chunk in _chunks(polled, RECORD_BATCH):
            try:
                views = await self.record_many([(o.id, s.messages) for o, s in chunk],
                                               actor="scheduler")
                recorded.update((o.id, v) for (o, _), v in zip(chunk, views, strict=True))
                continue
            except Exception:
                log.exception("recording the messages of %d orders together failed; "
                              "recording them one by one", len(chunk))
            sem = asyncio.Semaphore(APPLY_CONCURRENCY)

            async def one(order: OrderView, status: ActivationStatus) -> None:
                async with sem:
                    try:
                        recorded[order.id] = await self.record_messages(
                            order.id, status.messages, actor="scheduler")
                    except Exception:
                        log.exception("order %s: recording its messages failed; polled again "
                                      "later", order.id)
                        recorded[order.id] = None

            await asyncio.gather(*(one(o, s) for o, s in chunk))
        return recorded

    async def expire_due(self, *, owner: str | None = None, limit: int = 100) -> int:
        """Expire waiting orders past their deadline (each after a final check for a code)."""
        owner = owner or self.worker_id
        now = self.clock.now()
        async with self.db.begin() as conn:
            # Completed orders polled for another code stop being polled at their deadline.
            await conn.execute(update(orders).where(
                orders.c.status == OrderStatus.COMPLETED, orders.c.next_poll_at.is_not(None),
                orders.c.expires_at <= now).values(next_poll_at=None))
        ids = await jobs.claim_orders(
            self.db, owner=owner, now=now,
            due=(orders.c.status == OrderStatus.WAITING, orders.c.expires_at <= now),
            order_by=(orders.c.expires_at,), limit=limit)
        if not ids:
            return 0
        results = await self._each(ids, lambda oid: self.expire(oid), owner=owner)
        return sum(1 for r in results if r is not None and r.status == OrderStatus.EXPIRED)

    async def recover_reserving(self, *, owner: str | None = None, limit: int = 50) -> int:
        """Settle orders left ``reserving`` (crash, or a rent whose answer was lost).

        Idempotent providers are asked again with the same key; others are searched for an
        activation nobody owns; if none is found, the order fails and the hold is voided (an
        activation that shows up later is an orphan the reconciliation cancels).
        """
        owner = owner or self.worker_id
        now = self.clock.now()
        threshold = now - timedelta(seconds=self.settings.RECOVERY_AFTER_SECONDS)
        ids = await jobs.claim_orders(
            self.db, owner=owner, now=now,
            due=(orders.c.status == OrderStatus.RESERVING, orders.c.updated_at <= threshold),
            order_by=(orders.c.created_at,), limit=limit)
        if not ids:
            return 0
        results = await self._each(ids, self.recover_order, owner=owner,
                                   concurrency=RECOVERY_CONCURRENCY)
        return sum(1 for r in results if r is not None and r.status != OrderStatus.RESERVING)

    async def recover_order(self, order_id: str) -> OrderView:
        """Settle one ``reserving`` order now; a provider that fails leaves it for later."""
        try:
            return await self._recover_one(order_id)
        except ProviderError as exc:
            log.info("recovery of %s deferred: %s", order_id, exc)
            return await self.get_order(order_id)

    async def _recover_one(self, order_id: str) -> OrderView:
        order = await self.get_order(order_id)
        if order.status != OrderStatus.RESERVING:
            return order
        provider = self.providers.get(order.provider or "")
        if provider is None:
            return await self.fail(order_id, reason="provider no longer configured",
                                   actor="recovery")
        if provider.capabilities.idempotent_rent:
            try:
                rental = await provider.rent(RentRequest(order.service, order.country,
                                                         max_cost=order.price,
                                                         idempotency_key=order.id))
            except BusinessError as exc:
                return await self.fail(order_id, reason=f"recovery: {exc}", actor="recovery")
            return await self._assign(order, order.provider or "", rental, actor="recovery")
        active = await provider.active_activations()
        async with self.db.read() as conn:
            owned = set((await conn.scalars(select(orders.c.activation_id).where(
                orders.c.provider == order.provider,
                orders.c.activation_id.in_([a.activation_id for a in active])))).all()) if active else set()
        window = timedelta(seconds=self.settings.RECOVERY_AFTER_SECONDS * 2)
        for rental in active:
            if rental.activation_id in owned:
                continue
            if rental.service not in (None, order.service) or rental.country not in (None, order.country):
                continue
            if rental.created_at is not None and abs(rental.created_at - order.created_at) > window:
                continue
            return await self._assign(order, order.provider or "", rental, actor="recovery")
        return await self.fail(order_id, reason="recovery: the provider has no such activation",
                               actor="recovery")

    def _hold_overdue(self, cutoff: datetime) -> Any:
        res = transfers.alias("res")
        return (select(transfers.c.id).where(
            transfers.c.id == orders.c.hold_transfer_id, transfers.c.kind == ledger.PENDING,
            transfers.c.timeout_at <= cutoff,
            ~select(res.c.id).where(res.c.pending_id == transfers.c.id).exists())
            .exists())

    async def resolve_overdue_holds(
        self, *, owner: str | None = None, grace_seconds: float = 0, limit: int = 100,
    ) -> int:
        """Safety net: a hold past its timeout is settled through its order's transition
        (expire a waiting order, fail a reserving one), never voided behind its back.
        A closed order whose hold is still pending is the reconciliation's to report."""
        owner = owner or self.worker_id
        now = self.clock.now()
        cutoff = now - timedelta(seconds=grace_seconds)
        ids = await jobs.claim_orders(
            self.db, owner=owner, now=now,
            due=(orders.c.status.in_((OrderStatus.WAITING, OrderStatus.RESERVING)),
                 self._hold_overdue(cutoff)),
            order_by=(orders.c.created_at,), limit=limit)
        if not ids:
            return 0
        results = await self._each(ids, lambda oid: self.settle_overdue(oid, actor="safety_net"),
                                   owner=owner)
        return sum(1 for r in results if r is not None and not r.is_open)

    async def settle_overdue(self, order_id: str, *, actor: str) -> OrderView:
        """Close an order that outlived its deadline or its hold: expire a waiting one
        (final check first), fail a reserving one. Money follows the transition."""
        order = await self.get_order(order_id)
        if order.status == OrderStatus.WAITING:
            return await self.expire(order_id, actor=actor)
        if order.status == OrderStatus.RESERVING:
            return await self.fail(order_id, reason="hold timed out while reserving", actor=actor)
        return order

    async def apply_upstream_status(
        self, order_id: str, status: ActivationStatus, *, actor: str,
    ) -> OrderView:
        """Bring an order in line with what its provider reports: record messages (the first
        code completes it), fail it if the provider closed it without a code."""
        order = await self.get_order(order_id)
        if order.status not in (OrderStatus.WAITING, OrderStatus.COMPLETED):
            return order
        return await self._apply_status(order, status, actor=actor)

    async def settle_closed_order_hold(self, order_id: str, *, actor: str) -> bool:
        """Repair a closed order whose hold is still pending: void it for a cancelled,
        expired or failed order (the user is owed the money), post it for a completed or
        refunded one (the user had the code). The order's status is the truth here; its
        notification is queued under the transition's own dedupe key, so a user who was
        already told is not told twice. True when this call settled the hold."""
        from core import audit

        now = self.clock.now()
        async with self.db.begin() as conn:
            order = await _load(conn, order_id)
            if order is None or order.is_open:
                return False
            if await ledger.hold_resolution(conn, order.hold_transfer_id) is not None:
                return False
            voiding = order.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED,
                                       OrderStatus.FAILED)
            if voiding:
                await ledger.void_hold(conn, order.hold_transfer_id, now)
            else:
                await ledger.post_hold(conn, order.hold_transfer_id, now)
            action = "hold_voided" if voiding else "hold_posted"
            await self._event(conn, order_id, action, order.status, order.status, actor,
                              {"reason": "reconciliation: order closed with its hold pending"}, now)
            await audit.record(conn, actor=actor, action=f"order.{action}", target_type="order",
                               target_id=order_id, reason="order closed with its hold pending",
                               detail={"amount": order.price, "status": order.status}, now=now)
            chat = order.chat_id or order.telegram_id
            if voiding and chat:
                await outbox.enqueue(
                    conn, kind=order.status, chat_id=chat, order_id=order_id, now=now,
                    dedupe_key=f"order:{order_id}:{order.status}",
                    payload=self._payload(order, status=order.status, refunded=order.price))
        return True


# Scheduled work: polling backoff by order age — (younger than N seconds, interval × factor);
# older orders are polled every interval × POLL_BACKOFF_MAX_FACTOR, at most POLL_BACKOFF_CAP_S.
# Codes mostly arrive within minutes, and a batch status read makes a poll cheap, so the full
# rate lasts five minutes.
POLL_BACKOFF = ((300, 1), (900, 2))
POLL_BACKOFF_MAX_FACTOR = 4
POLL_BACKOFF_CAP_S = 30
RECOVERY_CONCURRENCY = 1  # two at once could both take the same unowned activation
APPLY_CONCURRENCY = 8  # orders written at once per provider when one at a time (a close, a retry)
RECORD_BATCH = 100  # orders recorded per transaction: bounds how long one holds the writer
POLL_ROUNDS_IN_FLIGHT = 3
_T = TypeVar("_T")
SQL_IN_CHUNK = 900  # ids per IN (…) list: well under SQLite's bound-parameter limit


def _chunks(items: list[_T], size: int) -> Iterable[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
