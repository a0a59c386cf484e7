"""Price overrides set by staff: a service's own markup or fixed price, and a country's markup.

A service's fixed price wins over everything, then a service's markup; otherwise a country's
markup replaces the shop's default markup for every service in that country (numbers in some
countries cost the shop more to support); without either the default markup applies.
Functions taking ``conn`` run inside the caller's unit of work; ``override_price`` and
``remove_price_override`` own theirs, committing the audit row with the change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core import audit, pricing
from core.db.engine import insert_ignore
from core.db.tables import countries, country_price_overrides, price_overrides, services
from core.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from core.db.engine import Database

MAX_OVERRIDE_MARKUP = 1000


@dataclass(frozen=True, slots=True)
class PriceOverride:
    service: str
    markup_percent: int | None
    fixed_price: int | None
    updated_at: datetime


_SERVICE = select(services.c.code).where(services.c.code == bindparam("code"))
_OVERRIDE = select(price_overrides).where(price_overrides.c.service == bindparam("service"))


async def set_price_override(
    conn: AsyncConnection,
    service: str,
    *,
    markup_percent: int | None = None,
    fixed_price: int | None = None,
    now: datetime,
) -> PriceOverride:
    """Set a service's own markup or fixed price (a fixed price wins when both are set)."""
    await require_service(conn, service)
    if markup_percent is None and fixed_price is None:
        raise InvalidInput("give a markup percent or a fixed price (or clear the override)")
    if markup_percent is not None:
        if isinstance(markup_percent, bool) or int(markup_percent) != markup_percent:
            raise InvalidInput("the markup must be a whole number of percent")
        markup_percent = int(markup_percent)
        if not 0 <= markup_percent <= MAX_OVERRIDE_MARKUP:
            raise InvalidInput(f"the markup must be between 0 and {MAX_OVERRIDE_MARKUP} percent")
    if fixed_price is not None:
        if isinstance(fixed_price, bool) or int(fixed_price) != fixed_price or fixed_price <= 0:
            raise InvalidInput("a fixed price must be a positive amount")
        fixed_price = int(fixed_price)
    values = {"markup_percent": markup_percent, "fixed_price": fixed_price, "updated_at": now}
    inserted = await conn.execute(insert_ignore(conn, price_overrides).values(service=service, **values))
    if not inserted.rowcount:
        await conn.execute(
            update(price_overrides).where(price_overrides.c.service == service).values(**values)
        )
    return PriceOverride(
        service=service, updated_at=now, markup_percent=markup_percent, fixed_price=fixed_price
    )


async def get_price_override(conn: AsyncConnection, service: str) -> PriceOverride | None:
    row = (await conn.execute(_OVERRIDE, {"service": service})).first()
    return override_from_row(row) if row is not None else None


async def clear_price_override(conn: AsyncConnection, service: str) -> bool:
    """Back to the shop's default markup; False if there was no override."""
    result = await conn.execute(delete(price_overrides).where(price_overrides.c.service == service))
    return bool(result.rowcount)


async def override_price(
    db: Database,
    service: str,
    *,
    markup_percent: int | None = None,
    fixed_price: int | None = None,
    actor: str,
    reason: str,
    now: datetime,
) -> PriceOverride:
    """A staff member sets a service's price: the override and its audit row commit together."""
    async with db.begin() as conn:
        result = await set_price_override(
            conn, service, markup_percent=markup_percent, fixed_price=fixed_price, now=now
        )
        await audit.record(
            conn,
            actor=actor,
            action="price.set",
            target_type="service",
            target_id=service,
            reason=reason,
            now=now,
            detail={"markup_percent": result.markup_percent, "fixed_price": result.fixed_price},
        )
    return result


async def remove_price_override(
    db: Database, service: str, *, actor: str, reason: str, now: datetime
) -> bool:
    """Back to the default markup, audited; False (and no audit row) if there was none."""
    async with db.begin() as conn:
        cleared = await clear_price_override(conn, service)
        if cleared:
            await audit.record(
                conn,
                actor=actor,
                action="price.clear",
                target_type="service",
                target_id=service,
                reason=reason,
                detail=None,
                now=now,
            )
    return cleared


def price_with_override(cost: int, markup_percent: int | float, override: PriceOverride | None) -> int:
    return pricing.user_price(
        cost,
        markup_percent=markup_percent,
        override_markup=override.markup_percent if override else None,
        fixed_price=override.fixed_price if override else None,
    )


async def overrides_for(conn: AsyncConnection, codes: Sequence[str]) -> dict[str, PriceOverride]:
    rows = await conn.execute(select(price_overrides).where(price_overrides.c.service.in_(list(codes))))
    return {r.service: override_from_row(r) for r in rows}


def override_from_row(row: Any) -> PriceOverride:
    return PriceOverride(
        service=row.service,
        markup_percent=row.markup_percent,
        fixed_price=int(row.fixed_price) if row.fixed_price is not None else None,
        updated_at=row.updated_at,
    )


async def require_service(conn: AsyncConnection, service: str) -> None:
    found = (await conn.execute(_SERVICE, {"code": str(service)})).first()
    if found is None:
        raise NotFound(f"unknown service {service!r}")


# --- per country ------------------------------------------------------------------------------


def check_markup(markup_percent: object) -> int:
    if isinstance(markup_percent, bool) or not isinstance(markup_percent, int | float):
        raise InvalidInput("the markup must be a whole number of percent")
    if int(markup_percent) != markup_percent:
        raise InvalidInput("the markup must be a whole number of percent")
    if not 0 <= int(markup_percent) <= MAX_OVERRIDE_MARKUP:
        raise InvalidInput(f"the markup must be between 0 and {MAX_OVERRIDE_MARKUP} percent")
    return int(markup_percent)


async def require_country(conn: AsyncConnection, country: str) -> str:
    code = str(country).strip().upper()
    found = (await conn.execute(select(countries.c.code).where(countries.c.code == code))).first()
    if found is None:
        raise NotFound(f"unknown country {country!r}")
    return code


async def country_markups(conn: AsyncConnection) -> dict[str, int]:
    """Every country's own markup (few rows: one per country staff priced)."""
    rows = await conn.execute(
        select(country_price_overrides.c.country, country_price_overrides.c.markup_percent)
    )
    return {r.country: int(r.markup_percent) for r in rows}


def markup_for(default: int | float, country_markup: int | None) -> int | float:
    """The markup a country's prices start from: its own, else the shop's default."""
    return default if country_markup is None else country_markup


async def override_country_price(
    db: Database, country: str, *, markup_percent: int, actor: str, reason: str, now: datetime
) -> int:
    """A staff member sets a country's markup: the override and its audit row commit together."""
    markup = check_markup(markup_percent)
    async with db.begin() as conn:
        code = await require_country(conn, country)
        values = {"markup_percent": markup, "updated_at": now}
        inserted = await conn.execute(
            insert_ignore(conn, country_price_overrides).values(country=code, **values)
        )
        if not inserted.rowcount:
            await conn.execute(
                update(country_price_overrides)
                .where(country_price_overrides.c.country == code)
                .values(**values)
            )
        await audit.record(
            conn,
            actor=actor,
            action="price.country.set",
            target_type="country",
            target_id=code,
            reason=reason,
            now=now,
            detail={"markup_percent": markup},
        )
    return markup


async def remove_country_price_override(
    db: Database, country: str, *, actor: str, reason: str, now: datetime
) -> bool:
    """Back to the default markup in that country, audited; False if it had none."""
    async with db.begin() as conn:
        code = str(country).strip().upper()
        result = await conn.execute(
            delete(country_price_overrides).where(country_price_overrides.c.country == code)
        )
        if result.rowcount:
            await audit.record(
                conn,
                actor=actor,
                action="price.country.clear",
                target_type="country",
                target_id=code,
                reason=reason,
                detail=None,
                now=now,
            )
    return bool(result.rowcount)
