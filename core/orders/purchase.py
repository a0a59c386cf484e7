"""Buying a number: hold the price, rent from the cheapest provider, fail over in turn.

A purchase runs in three phases (DESIGN §4). Phase 1 commits the hold and a ``reserving``
order; phase 2 calls the provider with *no transaction open*; phase 3 commits the outcome.
A crash anywhere leaves a ``reserving`` order that recovery resolves.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core import delivery_stats, idempotency, ledger, routing
from core.db.tables import orders, users
from core.errors import AlreadyInProgress, NoProviderAvailable, UserBlocked, UserNotFound
from core.order_states import OrderEvent, OrderStatus, UpstreamState
from core.orders import transitions, upstream
from core.orders.view import OrderView, load, view, with_
from core.providers.base import Rental, RentRequest
from core.providers.errors import (
    AccountError,
    BusinessError,
    OutcomeUnknown,
    OutOfStock,
    PriceTooHigh,
    TransientError,
)

if TYPE_CHECKING:
    from core.orders.service import OrderService

log = logging.getLogger("core.orders")

_BUYER = select(users.c.id, users.c.wallet_account_id, users.c.blocked, users.c.telegram_id).where(
    users.c.id == bindparam("user_id")
)


@dataclass(frozen=True, slots=True)
class _Checked:
    """What phase 1 read and validated before opening its write transaction."""

    user_id: int
    wallet_account_id: int
    telegram_id: int
    quote: Any
    candidates: list[tuple[str, int]]


async def purchase(
    svc: OrderService,
    *,
    user_id: int,
    quote_id: str,
    idempotency_key: str,
    chat_id: int | None = None,
    message_id: int | None = None,
) -> OrderView:
    now = svc.clock.now()
    fp = idempotency.fingerprint("purchase", user_id, quote_id)
    order_id = ledger.new_id()
    checked = None
    async with svc.db.read() as conn:
        # Reads first, outside the write transaction, so the writer's lock covers only the
        # writes. A key already in use skips the checks: a retry after the quote expired
        # must still get its order back, not an error.
        if not await idempotency.exists(conn, idempotency_key):
            checked = await _check(svc, conn, user_id, quote_id, now)
    async with svc.db.begin() as conn:
        # The key is stored as done with the order id: the order and its hold commit with
        # it, and from then on the order's own status says how far it got.
        prior = await idempotency.claim(
            conn,
            key=idempotency_key,
            scope="purchase",
            fingerprint=fp,
            now=now,
            result={"order_id": order_id},
        )
        if prior is None:
            if checked is None:  # the key vanished (reaped) since we looked
                checked = await _check(svc, conn, user_id, quote_id, now)
            order = await _open_order(svc, conn, order_id, checked, chat_id, message_id, now)
    if prior is not None:
        order = await svc.get_order(prior["order_id"])
        if order.status == OrderStatus.RESERVING:
            raise AlreadyInProgress({"order_id": order.id})
        return order
    assert checked is not None
    return await rent(svc, order, checked.candidates, actor="user")


async def _check(
    svc: OrderService, conn: AsyncConnection, user_id: int, quote_id: str, now: datetime
) -> _Checked:
    from core import catalogue, quotes  # imported here: sibling services

    user = (await conn.execute(_BUYER, {"user_id": user_id})).one_or_none()
    if user is None:
        raise UserNotFound(f"no user {user_id}")
    if user.blocked:
        raise UserBlocked("this account is blocked")
    quote = await quotes.load_quote(conn, quote_id, user_id, now)
    offers = await catalogue.candidate_offers(
        conn, quote.service, quote.country, quote.price, providers=list(svc.providers)
    )
    # Providers able to sell this now within the confirmed price, in the order routing
    # wants them tried (core.routing: expected cost per delivered code).
    candidates = await _route(svc, conn, user.id, quote, [(o.provider, o.cost) for o in offers], now)
    return _Checked(user.id, user.wallet_account_id, user.telegram_id, quote, candidates)


async def _route(
    svc: OrderService,
    conn: AsyncConnection,
    user_id: int,
    quote: Any,
    offers: list[tuple[str, int]],
    now: datetime,
) -> list[tuple[str, int]]:
    if len(offers) < 2:
        return offers
    settings = svc.settings
    avoid = quote.avoid_provider or await routing.provider_to_avoid(
        conn,
        user_id=user_id,
        service=quote.service,
        country=quote.country,
        now=now,
        window_s=settings.ROUTING_AVOID_AFTER_EXPIRY_SECONDS,
    )
    stats = await delivery_stats.for_pair(conn, quote.service, quote.country)
    ranked = routing.rank(
        offers,
        stats,
        params=routing.RoutingParams.from_settings(settings),
        now=now,
        rng=routing_rng(svc),
        avoid=avoid,
    )
    return [(s.provider, s.cost) for s in ranked]


def routing_rng(svc: OrderService) -> random.Random | None:
    """The randomness routing explores with: ``svc.routing_rng`` when a test or benchmark
    set one (seeded), else the module's own."""
    rng = getattr(svc, "routing_rng", None)
    return rng if isinstance(rng, random.Random) else None


async def _open_order(
    svc: OrderService,
    conn: AsyncConnection,
    order_id: str,
    checked: _Checked,
    chat_id: int | None,
    message_id: int | None,
    now: datetime,
) -> OrderView:
    """Phase 1: place the hold and insert the order as ``reserving``."""
    quote = checked.quote
    settings = svc.settings
    hold_id = ledger.derived_id("hold", order_id)
    revenue = await ledger.system_account(conn, ledger.REVENUE, spread=order_id)
    await ledger.create_hold(
        conn,
        id=hold_id,
        debit=checked.wallet_account_id,
        credit=revenue,
        amount=quote.price,
        order_id=order_id,
        now=now,
        timeout_at=now + timedelta(seconds=settings.ORDER_MAX_TTL_SECONDS + settings.HOLD_GRACE_SECONDS),
    )
    values = dict(
        id=order_id,
        user_id=checked.user_id,
        quote_id=quote.id,
        service=quote.service,
        country=quote.country,
        price=quote.price,
        status=OrderStatus.RESERVING.value,
        version=1,
        hold_transfer_id=hold_id,
        provider=checked.candidates[0][0] if checked.candidates else None,
        upstream_state=UpstreamState.NONE.value,
        upstream_attempts=0,
        can_request_another=False,
        chat_id=chat_id if chat_id is not None else checked.telegram_id,
        message_id=message_id,
        created_at=now,
        updated_at=now,
    )
    await conn.execute(orders.insert(), values)
    await transitions.record_event(
        conn,
        order_id,
        "created",
        None,
        OrderStatus.RESERVING,
        "user",
        {"price": quote.price, "quote_id": quote.id},
        now,
    )
    return view({**{c.name: None for c in orders.c}, **values, "telegram_id": checked.telegram_id})


def _available(svc: OrderService, name: str) -> bool:
    return svc.board is None or bool(svc.board.is_available(name))


async def rent(
    svc: OrderService, order: OrderView, candidates: list[tuple[str, int]], *, actor: str
) -> OrderView:
    """Phase 2 and 3: try providers in turn inside the one hold; no transaction open
    while a provider is called."""
    order_id = order.id
    reasons: list[str] = []
    tried: list[str] = []
    for name, _cost in candidates:
        if not _available(svc, name):
            reasons.append("unavailable")
            continue
        if order.provider != name:
            async with svc.db.begin() as conn:
                moved = await conn.execute(
                    update(orders)
                    .where(orders.c.id == order_id, orders.c.status == OrderStatus.RESERVING)
                    .values(provider=name, updated_at=svc.clock.now())
                )
            if moved.rowcount != 1:
                return await svc.get_order(order_id)  # someone else settled it
            order = with_(order, provider=name)
        tried.append(name)
        request = RentRequest(order.service, order.country, max_cost=order.price, idempotency_key=order_id)
        try:
            rental = await svc.providers[name].rent(request)
        except OutcomeUnknown as exc:
            log.warning(
                "order %s: outcome of rent at %s unknown (%s); recovery will settle it", order_id, name, exc
            )
            await transitions.note(svc, order_id, "rent_unknown", {"provider": name, "error": str(exc)})
            from core.orders import recovery  # imported here: recovery builds on this module

            recovery.resolve_soon(svc, order_id)
            return await svc.get_order(order_id)
        except (OutOfStock, PriceTooHigh) as exc:
            reasons.append("out_of_stock" if isinstance(exc, OutOfStock) else "price")
            continue
        except AccountError as exc:
            reasons.append("unavailable")
            await transitions.alert(svc, f"provider {name} account problem: {exc}", f"account:{name}")
            continue
        except (BusinessError, TransientError) as exc:
            reasons.append("unavailable")
            log.info("order %s: %s refused or failed (%s); trying the next provider", order_id, name, exc)
            continue
        return await assign(svc, order, name, rental, actor=actor)
    reason = (
        "out_of_stock"
        if reasons and all(r == "out_of_stock" for r in reasons)
        else "price"
        if reasons and all(r == "price" for r in reasons)
        else "unavailable"
        if reasons
        else "out_of_stock"
    )
    failed = await svc.fail(
        order_id,
        reason=f"no provider could supply a number: {reason}",
        actor=actor,
        notify=actor != "user",
        detail={"tried": tried, "reasons": reasons},
    )
    raise NoProviderAvailable(reason, order_id=failed.id)


async def assign(
    svc: OrderService, order: OrderView, provider: str, rental: Rental, *, actor: str
) -> OrderView:
    """Phase 3 on success: ``reserving`` → ``waiting`` with the number."""
    now = svc.clock.now()
    cap = order.created_at + timedelta(seconds=svc.settings.ORDER_MAX_TTL_SECONDS)
    values = dict(
        provider=provider,
        activation_id=rental.activation_id,
        phone=rental.phone,
        cost=rental.cost,
        expires_at=min(rental.expires_at, cap),
        can_request_another=rental.can_request_another,
        upstream_state=UpstreamState.ACTIVE,
        next_poll_at=now + timedelta(seconds=svc.settings.SMS_POLL_INTERVAL_SECONDS),
    )
    reserving = with_(order, status=OrderStatus.RESERVING)
    async with svc.db.begin() as conn:
        won = await transitions.apply(
            svc,
            conn,
            reserving,
            OrderEvent.RENTED,
            actor=actor,
            now=now,
            values=values,
            detail={"provider": provider, "activation_id": rental.activation_id},
            notify=actor != "user",
        )
        if not won:
            current = await load(conn, order.id)
    if won:
        return with_(order, status=OrderStatus.WAITING, version=order.version + 1, updated_at=now, **values)
    assert current is not None
    if current.provider == provider and current.activation_id == rental.activation_id:
        # Another recovery of this order got the same rental (idempotent rent) first: it is
        # the order's number now, not an orphan.
        return current
    # The order was settled while we were renting (recovery or staff): nobody owns this
    # rental, so give it back at once rather than pay for it.
    log.warning(
        "order %s settled during rent; cancelling orphan %s at %s", order.id, rental.activation_id, provider
    )
    await upstream.cancel_quietly(svc, provider, rental.activation_id)
    return current
