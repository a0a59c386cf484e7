"""Routing: which provider a purchase tries first, second, … — by expected cost per delivered code.

A number that never receives a code costs the buyer time and the shop a refund, so the
cheapest offer is not the best one. Each offer that fits the confirmed price is scored
``cost / rate``, where ``rate`` is the smoothed share of its recent rentals that delivered a
code: the posterior mean of a Beta(``ROUTING_PRIOR_SUCCESSES``, ``ROUTING_PRIOR_FAILURES``)
prior updated with the decayed counts from ``core.delivery_stats``. A combination never seen
starts at the prior's mean, so a new provider is neither shunned nor trusted blindly.

The order of the list is the failover order:

1. with probability ``ROUTING_EXPLORATION`` (bounded: never more), the least-known other
   offer goes first, so a new or recovered provider keeps getting some traffic and its
   statistics can change; the randomness is an injected ``random.Random`` (seeded in tests);
2. then the offers by expected cost per delivered code (cost, then ``PROVIDERS`` order on a
   tie);
3. then the offers whose rate is below ``ROUTING_SUCCESS_FLOOR`` with enough evidence — tried
   only when everything better is out of stock or failing;
4. last, the provider the buyer's previous number for this service and country just expired
   at (``avoid``).

The breaker and the confirmed price cap are applied by the caller as before: the candidates
are only offers with ``cost <= price``, and a provider whose breaker is open is skipped in
``core.orders.purchase.rent``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.tables import orders
from core.delivery_stats import Stats, StatsRow, all_stats
from core.order_states import OrderStatus

if TYPE_CHECKING:
    from core.config import Settings
    from core.db.engine import Database


@dataclass(frozen=True, slots=True)
class RoutingParams:
    prior_successes: float = 2.0
    prior_failures: float = 1.0
    half_life_s: float = 3 * 3600.0
    success_floor: float = 0.2
    floor_min_rentals: float = 5.0
    exploration: float = 0.05

    @classmethod
    def from_settings(cls, settings: Settings) -> RoutingParams:
        return cls(
            prior_successes=settings.ROUTING_PRIOR_SUCCESSES,
            prior_failures=settings.ROUTING_PRIOR_FAILURES,
            half_life_s=settings.ROUTING_HALF_LIFE_HOURS * 3600.0,
            success_floor=settings.ROUTING_SUCCESS_FLOOR,
            floor_min_rentals=settings.ROUTING_FLOOR_MIN_RENTALS,
            exploration=settings.ROUTING_EXPLORATION,
        )


@dataclass(frozen=True, slots=True)
class Scored:
    provider: str
    cost: int
    rate: float  # smoothed share of rentals that delivered a code
    evidence: float  # decayed rentals behind ``rate``
    expected_cost: float  # cost per delivered code
    below_floor: bool
    explored: bool = False  # put first by exploration, not by score


def smoothed_rate(stats: Stats | None, params: RoutingParams, now: datetime) -> tuple[float, float]:
    """(posterior mean success rate, decayed rentals) for one combination."""
    a, b = params.prior_successes, params.prior_failures
    if stats is None:
        return a / (a + b), 0.0
    s = stats.at(now, params.half_life_s)
    delivered = min(s.delivered, s.rented)
    return (a + delivered) / (a + b + s.rented), s.rented


def score(provider: str, cost: int, stats: Stats | None, params: RoutingParams, now: datetime) -> Scored:
    rate, evidence = smoothed_rate(stats, params, now)
    below = evidence >= params.floor_min_rentals and rate < params.success_floor
    return Scored(provider, cost, rate, evidence, cost / max(rate, 1e-9), below)


def rank(
    candidates: Sequence[tuple[str, int]],
    stats: Mapping[str, Stats],
    *,
    params: RoutingParams,
    now: datetime,
    rng: random.Random | None = None,
    avoid: str | None = None,
) -> list[Scored]:
    """The candidates ``[(provider, cost), …]`` (given in ``PROVIDERS`` priority order on equal
    cost) in the order a purchase should try them."""
    if not candidates:
        return []
    priority = {name: i for i, (name, _c) in enumerate(candidates)}
    scored = [score(name, cost, stats.get(name), params, now) for name, cost in candidates]
    scored.sort(
        key=lambda s: (s.provider == avoid, s.below_floor, s.expected_cost, s.cost, priority[s.provider])
    )
    if params.exploration > 0 and len(scored) > 1:
        draw = (rng or random).random()
        if draw < params.exploration:
            others = [s for s in scored[1:] if s.provider != avoid]
            if others:
                pick = min(others, key=lambda s: (s.evidence, s.expected_cost, priority[s.provider]))
                rest = [s for s in scored if s is not pick]
                return [
                    Scored(
                        pick.provider,
                        pick.cost,
                        pick.rate,
                        pick.evidence,
                        pick.expected_cost,
                        pick.below_floor,
                        True,
                    ),
                    *rest,
                ]
    return scored


# --- "another number" after an expiry ------------------------------------------------------

_RECENT_EXPIRED = (
    select(orders.c.provider)
    .where(
        orders.c.user_id == bindparam("user_id"),
        orders.c.service == bindparam("service"),
        orders.c.country == bindparam("country"),
        orders.c.status == OrderStatus.EXPIRED,
        orders.c.code.is_(None),
        orders.c.closed_at >= bindparam("since"),
    )
    .order_by(orders.c.closed_at.desc())
    .limit(1)
)
_ORDER_PROVIDER = select(
    orders.c.user_id, orders.c.service, orders.c.country, orders.c.provider, orders.c.code
).where(orders.c.id == bindparam("order_id"))


async def provider_to_avoid(
    conn: AsyncConnection,
    *,
    user_id: int,
    service: str,
    country: str,
    now: datetime,
    window_s: float,
    after_order: str | None = None,
) -> str | None:
    """The provider this buyer's next number for ``service``/``country`` should not come from
    first: the one of ``after_order`` (the order the buyer's "Another number" names) when it
    is theirs, for the same service and country, and ended without a code; otherwise the one
    of their latest number for it that expired without a code within ``window_s``."""
    if after_order is not None:
        row = (await conn.execute(_ORDER_PROVIDER, {"order_id": str(after_order)})).one_or_none()
        if (
            row is not None
            and row.user_id == user_id
            and row.service == service
            and row.country == country
            and row.code is None
            and row.provider
        ):
            return str(row.provider)
    if window_s <= 0:
        return None
    found = await conn.scalar(
        _RECENT_EXPIRED,
        {
            "user_id": user_id,
            "service": service,
            "country": country,
            "since": now - timedelta(seconds=window_s),
        },
    )
    return str(found) if found else None


# --- what the status screens show ------------------------------------------------------------


def describe(row: StatsRow, params: RoutingParams, now: datetime) -> dict[str, Any]:
    """One combination as ``providers status`` and the dashboard show it: plain counts, the
    decayed figures routing uses, the smoothed rate and whether it is below the floor."""
    recent = row.stats.at(now, params.half_life_s)
    scored = score(row.provider, 0, row.stats, params, now)
    mean = recent.mean_first_code_seconds
    return {
        "provider": row.provider,
        "service": row.service,
        "country": row.country,
        "rentals": row.stats.rented_total,
        "codes": row.stats.delivered_total,
        "recent_rentals": round(recent.rented, 2),
        "recent_codes": round(recent.delivered, 2),
        "success_rate": round(scored.rate, 4),
        "first_code_seconds": round(mean, 1) if mean is not None else None,
        "below_floor": scored.below_floor,
        "last_closed_at": row.stats.last_closed_at,
    }


async def status_rows(
    db: Database, settings: Settings, now: datetime, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """``describe`` for every combination on record, most rentals first."""
    rows = await all_stats(db)
    params = RoutingParams.from_settings(settings)
    return [describe(r, params, now) for r in (rows if limit is None else rows[:limit])]
