"""Recording SMS codes: the first code completes a waiting order and captures its hold.

Messages are stored once each. Codes after completion are recorded and forwarded without
charge; codes after a refund are recorded and never delivered (the user got their money
back, so the shop does not give the code away). After its first code the number stays open
upstream, so "Another code" can ask the provider for one, until the buyer taps Done or the
deadline passes (``closing``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core import idempotency, ledger, referrals
from core.db.chunks import chunks
from core.db.engine import insert_ignore
from core.db.tables import idempotency_keys, order_events, order_messages, orders
from core.db.tables import outbox as outbox_t
from core.errors import OrderNotFound, OrderStateConflict
from core.order_states import OrderEvent, OrderStatus, UpstreamState, transition
from core.orders import transitions
from core.orders.transitions import Retry, event_row, outbox_row
from core.orders.view import (
    CHARGE,
    LOAD_MANY,
    LOCK_MANY,
    SEEN_MANY,
    AnotherCodeResult,
    OrderView,
    load,
    message_id,
    number_open,
    view,
    with_,
)
from core.providers.base import ActivationState, ActivationStatus, SmsMessage

if TYPE_CHECKING:
    from core.orders.service import OrderService

# How long a first tap's request holds its key before a second tap may take it over (the
# first attempt crashed between its claim and the provider's answer).
ANOTHER_LOCK_S = 30


async def record_messages(
    svc: OrderService,
    order_id: str,
    messages: Iterable[SmsMessage],
    *,
    actor: str,
) -> OrderView:
    (order,) = await record_many(svc, [(order_id, messages)], actor=actor)
    if order is None:
        raise OrderNotFound(f"no order {order_id}")
    return order


async def record_many(
    svc: OrderService,
    items: Iterable[tuple[str, Iterable[SmsMessage]]],
    *,
    actor: str,
) -> list[OrderView | None]:
    """``record_messages`` for many orders in one write transaction.

    The poller records a whole round's codes this way: one commit and one move of each
    account (the revenue row above all, which every capture touches) instead of one per
    order. Each order ends exactly as ``record_messages`` would leave it; its view comes back
    in its position (None for an unknown order). All or nothing: if any order's writes
    fail, nothing of the batch is written.
    """
    listed = [(order_id, list(messages)) for order_id, messages in items]
    batch: dict[str, list[SmsMessage]] = {}
    for order_id, messages in listed:
        batch.setdefault(order_id, []).extend(messages)
    while True:
        try:
            views = await _record_once(svc, batch, actor=actor)
            break
        except Retry:
            continue  # the transaction rolled back whole; read the orders again
    return [views.get(order_id) for order_id, _ in listed]


async def _record_once(
    svc: OrderService, batch: dict[str, list[SmsMessage]], *, actor: str
) -> dict[str, OrderView]:
    now = svc.clock.now()
    ids = list(batch)
    views: dict[str, OrderView] = {}
    seen: dict[str, set[tuple[str | None, str | None]]] = defaultdict(set)
    # Read before the write transaction, so the writer's lock covers only the writes: if an
    # order moves meanwhile, its compare-and-set fails and the attempt is retried.
    async with svc.db.read() as conn:
        for chunk in chunks(ids):
            views.update(
                (r["id"], view(r)) for r in (await conn.execute(LOAD_MANY, {"ids": chunk})).mappings()
            )
            # The same SMS can reach us twice under different ids (a provider webhook
            # carries none, the poller sees the provider's); same code and text is the same
            # message.
            for order_id, code, text in await conn.execute(SEEN_MANY, {"ids": chunk}):
                seen[order_id].add((code, text))
    todo: list[tuple[OrderView, list[SmsMessage]]] = []
    for order_id, messages in batch.items():
        fresh = [m for m in messages if (m.code, m.text) not in seen[order_id]]
        if order_id in views and fresh:
            todo.append((views[order_id], fresh))
    if todo:
        async with svc.db.begin() as conn:
            views.update(await _record_in(svc, conn, todo, actor=actor, now=now))
    # Finishing upstream waits for Done or the deadline: never a network call on the code's path.
    return views


async def _record_in(
    svc: OrderService,
    conn: AsyncConnection,
    todo: list[tuple[OrderView, list[SmsMessage]]],
    *,
    actor: str,
    now: datetime,
) -> dict[str, OrderView]:
    """The writes of ``_record_once``: a fixed number of statements for the whole batch
    plus one compare-and-set per order that a code completes. Order rows are locked first
    (in id order), the accounts last, as in every other transition."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for order, messages in todo:
        for msg in messages:
            # A second message under the same id is refused, as the unique constraint
            # refuses it in a later transaction.
            rows.setdefault(
                (order.id, message_id(msg)),
                dict(
                    order_id=order.id,
                    provider_message_id=message_id(msg),
                    code=msg.code,
                    text=msg.text,
                    charged=False,
                    received_at=msg.received_at or now,
                ),
            )
    # In key order, so that two batches with messages in common (two pollers after a lease
    # ran out) wait for each other on the first shared key instead of deadlocking.
    inserted = {
        (r.order_id, r.provider_message_id): r.id
        for r in await conn.execute(
            insert_ignore(conn, order_messages).returning(
                order_messages.c.id, order_messages.c.order_id, order_messages.c.provider_message_id
            ),
            [rows[k] for k in sorted(rows)],
        )
    }
    captures: list[tuple[OrderView, SmsMessage, int]] = []  # order, its code, message row
    extras: list[tuple[OrderView, list[SmsMessage]]] = []  # codes after the charged one
    for order, messages in todo:
        coded: list[SmsMessage] = []
        keys: set[str] = set()
        for msg in messages:
            key = message_id(msg)
            if key not in keys:
                keys.add(key)
                if msg.code and (order.id, key) in inserted:
                    coded.append(msg)
        if coded and order.status == OrderStatus.WAITING:
            # The first new code of a waiting order is the one the user pays for: it is
            # marked charged and captured in this transaction, or neither happens.
            first = coded.pop(0)
            captures.append((order, first, inserted[(order.id, message_id(first))]))
        if coded:
            extras.append((order, coded))

    t = transition(OrderStatus.WAITING, OrderEvent.CODE)
    after: dict[str, OrderView] = {}
    events: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    for order, msg, _row in sorted(captures, key=lambda c: c[0].id):
        # The number stays open upstream for more codes (free) until Done or the deadline
        # (``closing.done``, ``closing.finish_due``); it is polled less often meanwhile.
        values = dict(
            code=msg.code,
            next_poll_at=now + timedelta(seconds=svc.settings.OPEN_ORDER_POLL_SECONDS),
            redraw_at=None,
        )
        if not await transitions.cas(conn, order, t, now, values):
            raise Retry()  # lost a race (PostgreSQL): someone else moved the order first
        events.append(event_row(order.id, t.event.value, t.source, t.target, actor, {"code": msg.code}, now))
        # The code goes out as its own message whoever found it. The order's message is left
        # to the caller when the user's own tap found the code (Check now, Cancel's last
        # look): the bot redraws that screen with its answer, as it does for every
        # transition a user drives, and a second edit from the sender would only repeat it.
        note = transitions.notice(
            svc,
            order,
            t,
            now,
            values,
            {"code": msg.code, "text": msg.text, "screen_shown": actor == "user"},
            0,
        )
        if note is not None:
            notes.append(outbox_row(**note))
        after[order.id] = with_(
            order,
            status=t.target,
            version=order.version + 1,
            updated_at=now,
            closed_at=order.closed_at or now,
            **values,
        )
    # Codes after the charged one go to the user free of charge while the order stays
    # completed. Its status is read again under a share lock, so a staff refund cannot
    # commit between this look and the notification's commit: a code that arrives after a
    # refund is kept and never sent.
    others = [o.id for o, _ in extras if o.id not in after and o.status == OrderStatus.COMPLETED]
    for chunk in chunks(others):
        after.update((r["id"], view(r)) for r in (await conn.execute(LOCK_MANY, {"ids": chunk})).mappings())
    for order, coded in extras:
        current = after.get(order.id)
        if current is None or current.status != OrderStatus.COMPLETED:
            continue
        notes += [
            outbox_row(
                kind="code_extra",
                chat_id=current.chat_id or current.telegram_id or 0,
                order_id=order.id,
                now=now,
                dedupe_key=f"order:{order.id}:msg:{message_id(msg)}",
                payload=transitions.notice_payload(svc, current, code=msg.code, text=msg.text),
            )
            for msg in coded
        ]
    if captures:
        await conn.execute(CHARGE, {"ids": [row for _o, _m, row in captures]})
        await conn.execute(order_events.insert(), events)
    if notes:
        await conn.execute(insert_ignore(conn, outbox_t), notes)
    if captures:
        # Last, so the accounts (the revenue row, which every capture moves) stay locked
        # only for the commit.
        await ledger.capture_holds(conn, [o.hold_transfer_id for o, _m, _r in captures], now)
        await referrals.reward_captures(conn, [o for o, _m, _r in captures], now, svc.settings)
    return after


async def check_now(svc: OrderService, order_id: str, *, user_id: int | None = None) -> OrderView:
    order = await svc.get_order(order_id, user_id=user_id)
    if order.status not in (OrderStatus.WAITING, OrderStatus.COMPLETED) or not order.activation_id:
        return order
    status = await svc.providers[order.provider or ""].status(order.activation_id)
    return await apply_status(svc, order, status, actor="user")


async def request_another_code(
    svc: OrderService,
    order_id: str,
    *,
    user_id: int | None = None,
) -> AnotherCodeResult:
    """Ask the provider for one more code on an open number; later codes cost nothing.

    A double tap asks once: the request is keyed by the order and how many messages it has
    (``core.idempotency``), so the same tap replayed finds the first request, and once a new
    code has arrived the next tap is a new request. The key and the check that the number is
    still open commit before the provider call (none runs inside a transaction); if the
    provider refuses, the key is given back so the buyer can try again."""
    order = await svc.get_order(order_id, user_id=user_id)
    now = svc.clock.now()
    provider = svc.providers.get(order.provider or "")
    if provider is None or not provider.capabilities.another_code or not order.can_request_another:
        raise OrderStateConflict(order.id, order.status, "request another code")
    if not number_open(order, now):
        raise OrderStateConflict(order.id, order.status, "request another code")
    assert order.activation_id is not None
    async with svc.db.begin() as conn:
        seen = int(
            await conn.scalar(
                select(func.count()).select_from(order_messages).where(order_messages.c.order_id == order.id)
            )
            or 0
        )
        key = f"another:{order.id}:{seen}"
        prior = await idempotency.claim(
            conn,
            key=key,
            scope="another_code",
            fingerprint=idempotency.fingerprint(order.id, seen),
            now=now,
            lock_seconds=ANOTHER_LOCK_S,
        )
        if prior is not None:
            return AnotherCodeResult(order, already=True)
        # Still open now (Done or the deadline may have closed it since the read above): if
        # not, the key rolls back with this transaction and nothing is asked.
        still = await conn.execute(
            update(orders)
            .where(
                orders.c.id == order.id,
                orders.c.status == OrderStatus.COMPLETED,
                orders.c.upstream_state == UpstreamState.ACTIVE,
                orders.c.expires_at > now,
            )
            .values(next_poll_at=now, updated_at=now)
        )
        if still.rowcount != 1:
            current = await load(conn, order.id)
            raise OrderStateConflict(
                order.id, current.status if current else order.status, "request another code"
            )
    try:
        await provider.request_another_code(order.activation_id)
    except BaseException:
        async with svc.db.begin() as conn:
            await conn.execute(delete(idempotency_keys).where(idempotency_keys.c.key == key))
        raise
    async with svc.db.begin() as conn:
        await idempotency.finish(conn, key, {"asked": True}, now)
        await transitions.record_event(
            conn, order.id, "another_code", None, None, "user", {"messages": seen}, now
        )
    return AnotherCodeResult(await svc.get_order(order.id))


async def apply_status(
    svc: OrderService,
    order: OrderView,
    status: ActivationStatus,
    *,
    actor: str,
) -> OrderView:
    """Bring an order in line with what its provider reports: record messages (the first
    code completes it), fail it if the provider closed it without a code."""
    if status.messages:
        order = await record_messages(svc, order.id, status.messages, actor=actor)
    return await fail_if_closed(svc, order, status, actor=actor)


async def fail_if_closed(
    svc: OrderService, order: OrderView, status: ActivationStatus, *, actor: str
) -> OrderView:
    if order.status == OrderStatus.WAITING and status.state in (
        ActivationState.CANCELLED,
        ActivationState.EXPIRED,
    ):
        # Closed upstream without a code: the user must not pay for it.
        order = await svc.fail(
            order.id,
            reason=f"provider closed the activation ({status.state})",
            actor=actor,
            upstream_state=UpstreamState.CANCELLED,
        )
    return order
