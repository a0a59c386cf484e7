"""The catalogue: services, countries and provider offers.

Why it looks like this:

* Offers are a cache of each provider's catalogue, replaced per provider atomically by
  ``sync_offers``. The provider is asked *before* the transaction opens (``sync_catalogue``),
  never inside it.
* A price is the user price of the cheapest offer with stock across providers, and only
  offers whose cost fits the price are ever counted as sellable (a fixed price below the
  cost makes the combination unavailable rather than a loss).
* Quotes (the price fixed for the confirm screen) live in ``core.quotes``; per-service
  price overrides in ``core.price_overrides``.

Functions taking ``conn`` run inside the caller's unit of work; those taking ``db`` own
theirs (``sync_offers``, ``sync_catalogue``, the bot's reads, and ``prune_catalogue``,
committing its audit row with its change).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import bindparam, delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit, pricing
from core.catalogue_data import COUNTRIES, SERVICES
from core.db.engine import insert_ignore
from core.db.tables import countries, offers, services
from core.price_overrides import (
    country_markups,
    get_price_override,
    markup_for,
    overrides_for,
    price_with_override,
    require_service,
)

if TYPE_CHECKING:
    from core.clock import Clock
    from core.db.engine import Database
    from core.providers.base import Offer, Provider

MAX_PAGE = 100
_SYNC_LOCK_CLASS = 0x0FFE  # first key of pg_advisory_xact_lock(int, int) for offer syncs


@dataclass(frozen=True, slots=True)
class ServiceView:
    code: str
    name: str
    available: bool  # some provider has a sellable offer with stock
    min_price: int | None = None  # cheapest user price; None if unavailable or not asked


@dataclass(frozen=True, slots=True)
class CountryOffer:
    country: str
    name: str
    price: int  # user price, shop minor units
    stock: int  # summed over the offers that can serve this price


class Candidate(NamedTuple):
    provider: str
    cost: int
    stock: int


@dataclass(frozen=True, slots=True)
class SyncResult:
    provider: str
    stored: int  # offers now on record for the provider
    removed: int  # (service, country) pairs it no longer offers
    skipped: int  # offers naming a service/country we do not know, or invalid numbers


# --- reference data ---------------------------------------------------------------------


async def seed_reference_data(conn: AsyncConnection) -> None:
    """Insert the canonical services and countries; safe to run on every start.

    Existing rows get their display name and popularity refreshed from ``catalogue_data``;
    nothing is ever deleted (offers and history refer to these codes).
    """
    await conn.execute(
        insert_ignore(conn, services),
        [{"code": s.code, "name": s.name, "popularity": s.popularity} for s in SERVICES],
    )
    await conn.execute(insert_ignore(conn, countries), [{"code": c.code, "name": c.name} for c in COUNTRIES])
    await conn.execute(
        update(services)
        .where(services.c.code == bindparam("b_code"))
        .where(or_(services.c.name != bindparam("b_name"), services.c.popularity != bindparam("b_pop")))
        .values(name=bindparam("b_name"), popularity=bindparam("b_pop")),
        [{"b_code": s.code, "b_name": s.name, "b_pop": s.popularity} for s in SERVICES],
    )
    await conn.execute(
        update(countries)
        .where(countries.c.code == bindparam("b_code"))
        .where(countries.c.name != bindparam("b_name"))
        .values(name=bindparam("b_name")),
        [{"b_code": c.code, "b_name": c.name} for c in COUNTRIES],
    )


# --- offers -----------------------------------------------------------------------------


async def sync_offers(
    db: Database, provider_name: str, new_offers: Iterable[Offer], now: datetime
) -> SyncResult:
    """Replace everything on record for ``provider_name`` with ``new_offers``, atomically.

    Readers see the old catalogue or the new one, never a mix. Offers for unknown services or
    countries are skipped (adapters map to canonical codes; anything else is noise). When a
    provider lists a pair twice, the cheapest entry with stock wins.
    """
    best: dict[tuple[str, str], Offer] = {}
    skipped = 0
    async with db.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two syncs of one provider would otherwise both delete, then collide on insert.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:cls, :key)"),
                {"cls": _SYNC_LOCK_CLASS, "key": _lock_key(provider_name)},
            )
        known_services = set((await conn.execute(select(services.c.code))).scalars())
        known_countries = set((await conn.execute(select(countries.c.code))).scalars())
        for offer in new_offers:
            key = (offer.service, offer.country)
            if (
                offer.service not in known_services
                or offer.country not in known_countries
                or offer.cost < 0
                or offer.stock < 0
            ):
                skipped += 1
                continue
            held = best.get(key)
            if held is None or _better(offer, held):
                best[key] = offer
        previous = {
            (r.service, r.country)
            for r in await conn.execute(
                select(offers.c.service, offers.c.country).where(offers.c.provider == provider_name)
            )
        }
        await conn.execute(delete(offers).where(offers.c.provider == provider_name))
        if best:
            await conn.execute(
                offers.insert(),
                [
                    {
                        "provider": provider_name,
                        "service": o.service,
                        "country": o.country,
                        "cost": int(o.cost),
                        "stock": int(o.stock),
                        "updated_at": now,
                    }
                    for o in best.values()
                ],
            )
    return SyncResult(
        provider=provider_name,
        stored=len(best),
        removed=len(previous - best.keys()),
        skipped=skipped,
    )


async def sync_catalogue(db: Database, provider: Provider, clock: Clock) -> SyncResult:
    """Fetch a provider's catalogue (no transaction open), then store it with ``sync_offers``."""
    fetched = await provider.catalogue()
    return await sync_offers(db, provider.name, fetched, clock.now())


async def prune_offers(conn: AsyncConnection, keep_providers: Sequence[str]) -> int:
    """Drop offers of providers no longer configured, so they are never quoted."""
    result = await conn.execute(delete(offers).where(offers.c.provider.not_in(list(keep_providers))))
    return result.rowcount or 0


async def prune_catalogue(db: Database, keep_providers: Sequence[str], *, actor: str, now: datetime) -> int:
    """``prune_offers`` as a service: the offers of providers no longer configured go, and
    the audit row naming how many commits with the deletion (none when nothing went)."""
    keep = sorted(keep_providers)
    async with db.begin() as conn:
        removed = await prune_offers(conn, keep)
        if removed:
            await audit.record(
                conn,
                actor=actor,
                action="catalogue.prune",
                target_type="offers",
                reason="providers no longer configured",
                now=now,
                detail={"removed": removed, "kept_providers": keep},
            )
    return removed


def _better(new: Offer, held: Offer) -> bool:
    if (new.stock > 0) != (held.stock > 0):
        return new.stock > 0
    return new.cost < held.cost


def _lock_key(provider_name: str) -> int:
    return zlib.crc32(provider_name.encode()) & 0x7FFFFFFF


# --- browsing ---------------------------------------------------------------------------


async def list_services(
    conn: AsyncConnection,
    *,
    search: str | None = None,
    offset: int = 0,
    limit: int = 8,
    markup_percent: int | float | None = None,
) -> tuple[list[ServiceView], int]:
    """One page of services, most popular first, and how many match in total.

    ``search`` matches a case-insensitive substring of the name or the code. ``min_price`` is
    filled only when ``markup_percent`` is given (it needs the shop's default markup).
    """
    offset = max(0, int(offset))
    limit = max(1, min(int(limit), MAX_PAGE))
    conditions = []
    term = (search or "").strip().lower()
    if term:
        conditions.append(
            or_(
                func.lower(services.c.name).contains(term, autoescape=True),
                func.lower(services.c.code).contains(term, autoescape=True),
            )
        )
    total = (await conn.execute(select(func.count()).select_from(services).where(*conditions))).scalar_one()
    rows = (
        await conn.execute(
            select(services.c.code, services.c.name)
            .where(*conditions)
            .order_by(services.c.popularity.desc(), services.c.name, services.c.code)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    codes = [r.code for r in rows]
    if not codes:
        return [], int(total)
    min_costs = {
        service: int(cost)
        for service, cost in await conn.execute(
            select(offers.c.service, func.min(offers.c.cost))
            .where(offers.c.service.in_(codes), offers.c.stock > 0)
            .group_by(offers.c.service)
        )
    }
    overrides = await overrides_for(conn, codes)
    views = []
    for r in rows:
        cost = min_costs.get(r.code)
        price = None
        if cost is not None:
            ov = overrides.get(r.code)
            candidate = pricing.user_price(
                cost,
                markup_percent=markup_percent if markup_percent is not None else 0,
                override_markup=ov.markup_percent if ov else None,
                fixed_price=ov.fixed_price if ov else None,
            )
            if pricing.sellable(cost, candidate):
                price = candidate
            else:
                cost = None
        views.append(
            ServiceView(
                code=r.code,
                name=r.name,
                available=cost is not None,
                min_price=price if markup_percent is not None else None,
            )
        )
    return views, int(total)


async def list_countries(
    conn: AsyncConnection, service: str, *, markup_percent: int | float
) -> list[CountryOffer]:
    """Countries where ``service`` can be bought now, cheapest first.

    Price is the user price of the cheapest offer with stock across providers; stock is summed
    over the offers that can serve that price. Raises ``NotFound`` for an unknown service.
    """
    await require_service(conn, service)
    override = await get_price_override(conn, service)
    markups = await country_markups(conn)
    rows = (
        await conn.execute(
            select(offers.c.country, countries.c.name, offers.c.cost, offers.c.stock)
            .join(countries, countries.c.code == offers.c.country)
            .where(offers.c.service == service, offers.c.stock > 0)
        )
    ).all()
    by_country: dict[str, list[Any]] = {}
    for r in rows:
        by_country.setdefault(r.country, []).append(r)
    result = []
    for code, group in by_country.items():
        cheapest = min(r.cost for r in group)
        price = price_with_override(cheapest, markup_for(markup_percent, markups.get(code)), override)
        if not pricing.sellable(cheapest, price):
            continue
        stock = sum(r.stock for r in group if pricing.sellable(r.cost, price))
        result.append(CountryOffer(country=code, name=group[0].name, price=price, stock=stock))
    result.sort(key=lambda c: (c.price, -c.stock, c.name))
    return result


# Every purchase asks this; building the statement per call cost more than running it.
_CANDIDATES = select(offers.c.provider, offers.c.cost, offers.c.stock).where(
    offers.c.service == bindparam("service"),
    offers.c.country == bindparam("country"),
    offers.c.stock > 0,
    offers.c.cost <= bindparam("max_cost"),
)
_CANDIDATES_OF = _CANDIDATES.where(offers.c.provider.in_(bindparam("providers", expanding=True)))


async def candidate_offers(
    conn: AsyncConnection,
    service: str,
    country: str,
    max_cost: int,
    *,
    providers: Sequence[str] | None = None,
) -> list[Candidate]:
    """Offers that can serve a purchase, cheapest first.

    Only offers with stock and ``cost <= max_cost``. With ``providers`` (the configured
    priority order), offers of other providers are left out and equal costs are ordered by
    that priority; otherwise ties go by more stock, then provider name.
    """
    params = {"service": service, "country": country, "max_cost": max_cost}
    if providers is None:
        result = await conn.execute(_CANDIDATES, params)
    else:
        result = await conn.execute(_CANDIDATES_OF, {**params, "providers": list(providers)})
    rows = [Candidate(r.provider, int(r.cost), int(r.stock)) for r in result]
    if providers is not None:
        rank = {name: i for i, name in enumerate(providers)}
        rows.sort(key=lambda c: (c.cost, rank.get(c.provider, len(rank)), -c.stock))
    else:
        rows.sort(key=lambda c: (c.cost, -c.stock, c.provider))
    return rows


# --- reads for the adapters -------------------------------------------------------------


async def services_page(
    db: Database,
    *,
    search: str | None = None,
    offset: int = 0,
    limit: int = 8,
    markup_percent: int | float | None = None,
) -> tuple[list[ServiceView], int]:
    """``list_services`` in its own read."""
    async with db.read() as conn:
        return await list_services(
            conn, search=search, offset=offset, limit=limit, markup_percent=markup_percent
        )


async def countries_of(db: Database, service: str, *, markup_percent: int | float) -> list[CountryOffer]:
    """``list_countries`` in its own read."""
    async with db.read() as conn:
        return await list_countries(conn, service, markup_percent=markup_percent)
