"""Quotes: the price the confirm screen shows, fixed on the server.

A quote stores the price shown on the confirm screen; the purchase charges the stored quote
(``load_quote`` checks owner and expiry), so nothing a client sends can change what is
charged. A price is the user price of the cheapest offer with stock across providers, and
only offers whose cost fits the price are ever counted as sellable (a fixed price below the
cost makes the combination unavailable rather than a loss).

Functions taking ``conn`` run inside the caller's unit of work; ``new_quote`` and
``find_quote`` own theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core import pricing, routing
from core.db.tables import countries, country_price_overrides, offers, price_overrides, quotes, services
from core.errors import NotFound, QuoteExpired, QuoteNotFound
from core.ledger import new_id
from core.price_overrides import markup_for, override_from_row, price_with_override
from core.providers.errors import OutOfStock

if TYPE_CHECKING:
    from core.db.engine import Database


@dataclass(frozen=True, slots=True)
class Quote:
    id: str
    user_id: int
    service: str
    country: str
    price: int
    expires_at: datetime
    # Routing hint: try this provider last (the buyer's previous number from it expired
    # without a code). Set from ``after_order``/``avoid_provider``; see core.routing.
    avoid_provider: str | None = None


# The quote and purchase path's statements, built once (building one per call cost as much
# as running it). Pricing a quote asks four things — does the service exist, does the
# country, the cheapest cost with stock, the service's override — in one statement: one
# round trip instead of four on PostgreSQL, on the hot path of every confirm screen.
_PRICING = (
    select(
        services.c.code,
        select(countries.c.code)
        .where(countries.c.code == bindparam("country"))
        .scalar_subquery()
        .label("country"),
        select(func.min(offers.c.cost))
        .where(
            offers.c.service == bindparam("service"),
            offers.c.country == bindparam("country"),
            offers.c.stock > 0,
        )
        .scalar_subquery()
        .label("cheapest"),
        select(country_price_overrides.c.markup_percent)
        .where(country_price_overrides.c.country == bindparam("country"))
        .scalar_subquery()
        .label("country_markup"),
        price_overrides.c.service,
        price_overrides.c.markup_percent,
        price_overrides.c.fixed_price,
        price_overrides.c.updated_at,
    )
    .select_from(services.outerjoin(price_overrides, price_overrides.c.service == services.c.code))
    .where(services.c.code == bindparam("service"))
)
_QUOTE = select(quotes).where(quotes.c.id == bindparam("quote_id"))


async def price_quote(
    conn: AsyncConnection,
    *,
    user_id: int,
    service: str,
    country: str,
    markup_percent: int | float,
    now: datetime,
    ttl_seconds: int,
    after_order: str | None = None,
    avoid_provider: str | None = None,
) -> Quote:
    """The quote the confirm screen would show, not yet stored (``create_quote`` and
    ``new_quote`` store it).

    ``after_order`` names the buyer's previous order this purchase follows (the "Another
    number" button): if it ended without a code, its provider is tried last. ``avoid_provider``
    says the same directly. Without either, the purchase still steers away from a provider
    whose number for this service and country just expired (``core.routing``).

    ``NotFound`` for an unknown service or country, ``OutOfStock`` when no provider has a
    sellable offer with stock.
    """
    row = (await conn.execute(_PRICING, {"service": str(service), "country": str(country)})).one_or_none()
    if row is None:
        raise NotFound(f"unknown service {service!r}")
    if row.country is None:
        raise NotFound(f"unknown country {country!r}")
    if row.cheapest is None:
        raise OutOfStock(f"no numbers for {service} in {country} right now")
    override = override_from_row(row) if row.service is not None else None
    cheapest = int(row.cheapest)
    markup = markup_for(markup_percent, row.country_markup)
    price = price_with_override(cheapest, markup, override)
    if not pricing.sellable(cheapest, price):
        raise OutOfStock(f"no numbers for {service} in {country} at the set price")
    if avoid_provider is None and after_order is not None:
        avoid_provider = await routing.provider_to_avoid(
            conn,
            user_id=user_id,
            service=service,
            country=country,
            now=now,
            window_s=0,
            after_order=after_order,
        )
    return Quote(
        id=new_id(),
        user_id=user_id,
        service=service,
        country=country,
        price=price,
        expires_at=now + timedelta(seconds=ttl_seconds),
        avoid_provider=avoid_provider,
    )


def _quote_row(quote: Quote, now: datetime) -> dict[str, object]:
    return {
        "id": quote.id,
        "user_id": quote.user_id,
        "service": quote.service,
        "country": quote.country,
        "price": quote.price,
        "expires_at": quote.expires_at,
        "created_at": now,
        "avoid_provider": quote.avoid_provider,
    }


async def create_quote(
    conn: AsyncConnection,
    *,
    user_id: int,
    service: str,
    country: str,
    markup_percent: int | float,
    now: datetime,
    ttl_seconds: int,
    after_order: str | None = None,
    avoid_provider: str | None = None,
) -> Quote:
    """Fix the price the confirm screen shows, inside the caller's transaction; the
    purchase charges exactly this. Raises what ``price_quote`` raises."""
    quote = await price_quote(
        conn,
        user_id=user_id,
        service=service,
        country=country,
        markup_percent=markup_percent,
        now=now,
        ttl_seconds=ttl_seconds,
        after_order=after_order,
        avoid_provider=avoid_provider,
    )
    await conn.execute(quotes.insert(), _quote_row(quote, now))
    return quote


async def new_quote(
    db: Database,
    *,
    user_id: int,
    service: str,
    country: str,
    markup_percent: int | float,
    now: datetime,
    ttl_seconds: int,
    after_order: str | None = None,
    avoid_provider: str | None = None,
) -> Quote:
    """``create_quote`` as two statements and no transaction: the read, then the insert.

    Nothing needs the two to be atomic — a quote is a record of the price shown, and one
    priced a moment before a price change is exactly as valid as one priced inside a
    transaction that commits a moment before it. So the bot's confirm screen skips the
    write transaction (on PostgreSQL two round trips instead of four; on SQLite the write
    lock is held for one insert).
    """
    async with db.read() as conn:
        quote = await price_quote(
            conn,
            user_id=user_id,
            service=service,
            country=country,
            markup_percent=markup_percent,
            now=now,
            ttl_seconds=ttl_seconds,
            after_order=after_order,
            avoid_provider=avoid_provider,
        )
    await db.write_one(quotes.insert(), _quote_row(quote, now))
    return quote


async def load_quote(conn: AsyncConnection, quote_id: str, user_id: int, now: datetime) -> Quote:
    """The stored quote, only for its owner and only until it expires.

    Another user's quote is reported as not found: its existence is not disclosed.
    """
    row = (await conn.execute(_QUOTE, {"quote_id": str(quote_id)})).one_or_none()
    if row is None or row.user_id != user_id:
        raise QuoteNotFound("quote not found")
    if now >= row.expires_at:
        raise QuoteExpired("the quote has expired; choose the number again")
    return Quote(
        id=row.id,
        user_id=row.user_id,
        service=row.service,
        country=row.country,
        price=int(row.price),
        expires_at=row.expires_at,
        avoid_provider=row.avoid_provider,
    )


async def find_quote(db: Database, quote_id: str, user_id: int, now: datetime) -> Quote:
    """``load_quote`` in its own read."""
    async with db.read() as conn:
        return await load_quote(conn, quote_id, user_id, now)
