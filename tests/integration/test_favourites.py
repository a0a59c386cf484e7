"""Favourites, the shortlist and popular countries against real databases (SQLite and, when
configured, PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from core import favourites
from core.catalogue_data import COUNTRIES, SERVICES
from core.db.tables import favourites as favourites_table
from core.errors import InvalidInput
from core.users import get_or_create_user


async def _user(db, clock, telegram_id: int) -> int:
    async with db.begin() as conn:
        return (await get_or_create_user(conn, telegram_id=telegram_id, now=clock.now())).id


async def test_saving_is_idempotent_and_concurrent_saves_keep_one_row(db, clock) -> None:
    uid = await _user(db, clock, 501)
    results = await asyncio.gather(
        *[
            favourites.set_favourite(
                db, user_id=uid, service="whatsapp", country="DE", on=True, now=clock.now()
            )
            for _ in range(6)
        ]
    )
    assert results == [True] * 6
    async with db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(favourites_table)) == 1
    assert await favourites.is_favourite(db, user_id=uid, service="whatsapp", country="DE")
    for _ in range(2):
        assert not await favourites.set_favourite(
            db, user_id=uid, service="whatsapp", country="DE", on=False, now=clock.now()
        )
    assert not await favourites.is_favourite(db, user_id=uid, service="whatsapp", country="DE")


async def test_pairs_outside_the_catalogue_and_past_the_limit_are_refused(db, clock) -> None:
    uid = await _user(db, clock, 502)
    with pytest.raises(InvalidInput):
        await favourites.set_favourite(
            db, user_id=uid, service="nope", country="DE", on=True, now=clock.now()
        )
    with pytest.raises(InvalidInput):
        await favourites.set_favourite(
            db, user_id=uid, service="whatsapp", country="XX", on=True, now=clock.now()
        )
    pairs = [(s.code, c.code) for s in SERVICES for c in COUNTRIES][: favourites.MAX_FAVOURITES]
    for service, country in pairs:
        await favourites.set_favourite(
            db, user_id=uid, service=service, country=country, on=True, now=clock.now()
        )
    with pytest.raises(InvalidInput):
        await favourites.set_favourite(
            db, user_id=uid, service="naver", country="EG", on=True, now=clock.now()
        )
    service, country = pairs[0]  # saving one already saved is no new one, even at the limit
    assert await favourites.set_favourite(
        db, user_id=uid, service=service, country=country, on=True, now=clock.now()
    )


async def test_the_shortlist_is_the_buyers_own_newest_first(db, clock) -> None:
    alice, bob = await _user(db, clock, 503), await _user(db, clock, 504)
    for service, country in (("whatsapp", "DE"), ("telegram", "GB"), ("google", "US")):
        clock.advance(60)
        await favourites.set_favourite(
            db, user_id=alice, service=service, country=country, on=True, now=clock.now()
        )
    pairs = await favourites.shortlist(db, user_id=alice, limit=2)
    assert [(p.service, p.country, p.saved) for p in pairs] == [
        ("google", "US", True),
        ("telegram", "GB", True),
    ]
    assert await favourites.shortlist(db, user_id=bob) == []
