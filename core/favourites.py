"""Favourites, recent buys and popular countries: the short ways back to what people buy.

Buyers come back for the same few service+country pairs, so the service list opens with
theirs (saved with ⭐, then the last distinct pairs they bought), and a country list opens
with the countries most bought for that service in the last days.

A favourite is a preference, not money: saving twice or forgetting twice changes nothing
(insert-or-ignore, delete), so a double tap or a retried callback is harmless. The pair
comes from callback data a client controls, so it is checked against the catalogue's codes
and a buyer keeps at most ``MAX_FAVOURITES`` (counted before the insert: two taps racing may
pass it by one, which costs a row and nothing else).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import delete, func, select

from core.catalogue_data import COUNTRY_CODES, SERVICE_CODES
from core.db.engine import insert_ignore
from core.db.tables import favourites, orders
from core.errors import InvalidInput

if TYPE_CHECKING:
    from core.db.engine import Database

MAX_FAVOURITES = 20
POPULAR_DAYS = 7
# Orders that never got a number say nothing about what a buyer wants again.
_NOT_BOUGHT = ("failed",)


class Pair(NamedTuple):
    service: str
    country: str
    saved: bool  # a favourite (else a recent buy)


async def set_favourite(
    db: Database, *, user_id: int, service: str, country: str, on: bool, now: datetime
) -> bool:
    """Save (``on``) or forget a pair; returns whether it is saved afterwards.

    Raises ``InvalidInput`` for a pair outside the catalogue or past the limit.
    """
    if service not in SERVICE_CODES or country not in COUNTRY_CODES:
        raise InvalidInput("unknown service or country")
    async with db.begin() as conn:
        if not on:
            await conn.execute(
                delete(favourites).where(
                    favourites.c.user_id == user_id,
                    favourites.c.service == service,
                    favourites.c.country == country,
                )
            )
            return False
        saved = (
            await conn.execute(
                select(favourites.c.service, favourites.c.country).where(favourites.c.user_id == user_id)
            )
        ).all()
        if (service, country) in {(r.service, r.country) for r in saved}:
            return True
        if len(saved) >= MAX_FAVOURITES:
            raise InvalidInput("too many favourites")
        await conn.execute(
            insert_ignore(conn, favourites),
            {"user_id": user_id, "service": service, "country": country, "created_at": now},
        )
    return True


async def is_favourite(db: Database, *, user_id: int, service: str, country: str) -> bool:
    async with db.read() as conn:
        found = await conn.scalar(
            select(func.count())
            .select_from(favourites)
            .where(
                favourites.c.user_id == user_id,
                favourites.c.service == service,
                favourites.c.country == country,
            )
        )
    return bool(found)


async def shortlist(db: Database, *, user_id: int, limit: int = 4) -> list[Pair]:
    """The buyer's favourites (newest first), then their last distinct bought pairs."""
    async with db.read() as conn:
        saved = (
            await conn.execute(
                select(favourites.c.service, favourites.c.country)
                .where(favourites.c.user_id == user_id)
                .order_by(favourites.c.created_at.desc(), favourites.c.service, favourites.c.country)
                .limit(limit)
            )
        ).all()
        recent = (
            await conn.execute(
                select(orders.c.service, orders.c.country, func.max(orders.c.created_at).label("last"))
                .where(orders.c.user_id == user_id, orders.c.status.not_in(_NOT_BOUGHT))
                .group_by(orders.c.service, orders.c.country)
                .order_by(func.max(orders.c.created_at).desc(), orders.c.service, orders.c.country)
                .limit(limit)
            )
        ).all()
    pairs = [Pair(r.service, r.country, True) for r in saved]
    seen = {(p.service, p.country) for p in pairs}
    for r in recent:
        if (r.service, r.country) not in seen and len(pairs) < limit:
            pairs.append(Pair(r.service, r.country, False))
            seen.add((r.service, r.country))
    return pairs


async def popular_countries(
    db: Database, *, service: str, now: datetime, limit: int = 3, days: int = POPULAR_DAYS
) -> list[str]:
    """Countries most bought for ``service`` in the last ``days``, most first."""
    since = now - timedelta(days=days)
    count = func.count().label("n")
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(orders.c.country, count)
                .where(
                    orders.c.service == service,
                    orders.c.created_at >= since,
                    orders.c.status.not_in(_NOT_BOUGHT),
                )
                .group_by(orders.c.country)
                .order_by(count.desc(), orders.c.country)
                .limit(limit)
            )
        ).all()
    return [r.country for r in rows]
