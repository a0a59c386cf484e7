from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from core import catalogue, ledger
from core.catalogue_data import COUNTRIES, SERVICES
from core.db.tables import countries, offers, quotes, services, users
from core.errors import InvalidInput, NotFound, QuoteExpired, QuoteNotFound
from core.price_overrides import clear_price_override, get_price_override, set_price_override
from core.providers.base import Offer
from core.providers.errors import OutOfStock
from core.providers.simulator import SimulatorProvider
from core.quotes import create_quote, load_quote, new_quote

MARKUP = 20


async def make_user(db, clock, telegram_id: int) -> int:
    async with db.begin() as conn:
        wallet = await ledger.open_wallet(conn, clock.now())
        result = await conn.execute(
            users.insert().values(
                telegram_id=telegram_id,
                wallet_account_id=wallet,
                blocked=False,
                unreachable=False,
                created_at=clock.now(),
            )
        )
        return result.inserted_primary_key[0]


@pytest.fixture
async def shop(db, clock):
    async with db.begin() as conn:
        await catalogue.seed_reference_data(conn)
    return db


async def store(db, clock, provider: str, *rows: tuple[str, str, int, int]):
    return await catalogue.sync_offers(db, provider, [Offer(*r) for r in rows], clock.now())


async def test_seeding_reference_data_is_idempotent_and_refreshes_names(db, clock):
    async with db.begin() as conn:
        await catalogue.seed_reference_data(conn)
        await conn.execute(update(services).where(services.c.code == "whatsapp").values(name="Old"))
    async with db.begin() as conn:
        await catalogue.seed_reference_data(conn)
    async with db.read() as conn:
        n_services = (await conn.execute(select(func.count()).select_from(services))).scalar_one()
        n_countries = (await conn.execute(select(func.count()).select_from(countries))).scalar_one()
        name = (await conn.execute(select(services.c.name).where(services.c.code == "whatsapp"))).scalar_one()
    assert (n_services, n_countries) == (len(SERVICES), len(COUNTRIES))
    assert len(SERVICES) >= 25 and len(COUNTRIES) >= 15
    assert name == "WhatsApp"


async def test_sync_replaces_a_providers_offers_and_leaves_others_alone(shop, clock):
    await store(shop, clock, "other", ("whatsapp", "GB", 40, 5))
    first = await store(
        shop, clock, "sim", ("whatsapp", "GB", 50, 10), ("telegram", "US", 70, 3), ("google", "DE", 30, 1)
    )
    assert (first.stored, first.removed, first.skipped) == (3, 0, 0)

    clock.advance(60)
    second = await store(
        shop,
        clock,
        "sim",
        ("whatsapp", "GB", 55, 0),  # now out of stock
        ("telegram", "US", 65, 9),
        ("telegram", "US", 90, 9),  # listed twice: the cheaper one is kept
        ("nosuch", "GB", 10, 10),  # unknown service: skipped
        ("whatsapp", "ZZ", 10, 10),  # unknown country: skipped
    )
    assert (second.stored, second.removed, second.skipped) == (2, 1, 2)
    async with shop.read() as conn:
        rows = {
            (r.provider, r.service, r.country): (r.cost, r.stock, r.updated_at)
            for r in await conn.execute(select(offers))
        }
    assert rows == {
        ("other", "whatsapp", "GB"): (40, 5, clock.now() - timedelta(seconds=60)),
        ("sim", "whatsapp", "GB"): (55, 0, clock.now()),
        ("sim", "telegram", "US"): (65, 9, clock.now()),
    }

    async with shop.begin() as conn:
        assert await catalogue.prune_offers(conn, ["sim"]) == 1
    async with shop.read() as conn:
        assert {r.provider for r in await conn.execute(select(offers.c.provider))} == {"sim"}


async def test_sync_catalogue_stores_the_simulators_catalogue(shop, clock):
    sim = SimulatorProvider(clock=clock)
    result = await catalogue.sync_catalogue(shop, sim, clock)
    assert result.stored == len(sim.offers) and result.skipped == 0
    assert sim.calls == [("catalogue",)]
    async with shop.read() as conn:
        views, total = await catalogue.list_services(conn, limit=100)
    assert total == len(SERVICES)
    assert sum(v.available for v in views) >= 20


async def test_concurrent_syncs_of_one_provider_do_not_collide(shop, clock):
    import asyncio

    batches = [[Offer("whatsapp", c.code, 10 + i, 5) for c in COUNTRIES[: 5 + i]] for i in range(4)]
    await asyncio.gather(*(catalogue.sync_offers(shop, "sim", b, clock.now()) for b in batches))
    async with shop.read() as conn:
        n = (await conn.execute(select(func.count()).select_from(offers))).scalar_one()
    assert n in {len(b) for b in batches}  # exactly one batch won, whole


async def test_list_services_is_popular_first_paged_and_searchable(shop, clock):
    await store(shop, clock, "sim", ("telegram", "GB", 100, 5), ("google", "US", 30, 0))
    async with shop.read() as conn:
        page, total = await catalogue.list_services(conn, offset=0, limit=3, markup_percent=MARKUP)
        page2, _ = await catalogue.list_services(conn, offset=3, limit=3)
        found, n_found = await catalogue.list_services(conn, search="GMAIL")
        by_code, _ = await catalogue.list_services(conn, search="tele")
        none, n_none = await catalogue.list_services(conn, search="100%_")
    assert total == len(SERVICES)
    assert [v.code for v in page] == ["whatsapp", "telegram", "google"]
    assert [v.code for v in page2] == [s.code for s in SERVICES[3:6]]
    whatsapp, telegram, google = page
    assert not whatsapp.available and whatsapp.min_price is None
    assert telegram.available and telegram.min_price == 120
    assert not google.available  # its only offer has no stock
    assert all(v.min_price is None for v in page2)  # no markup given, no price
    assert [v.code for v in found] == ["google"] and n_found == 1
    assert [v.code for v in by_code] == ["telegram"]
    assert none == [] and n_none == 0  # LIKE wildcards are matched literally


async def test_list_countries_takes_the_cheapest_offer_with_stock(shop, clock):
    await store(
        shop, clock, "a", ("whatsapp", "GB", 100, 5), ("whatsapp", "US", 300, 2), ("whatsapp", "DE", 10, 0)
    )
    await store(
        shop, clock, "b", ("whatsapp", "GB", 80, 3), ("whatsapp", "US", 200, 0), ("telegram", "FR", 50, 1)
    )
    async with shop.read() as conn:
        listed = await catalogue.list_countries(conn, "whatsapp", markup_percent=MARKUP)
        with pytest.raises(NotFound):
            await catalogue.list_countries(conn, "nosuch", markup_percent=MARKUP)
    assert [(c.country, c.name, c.price, c.stock) for c in listed] == [
        ("GB", "United Kingdom", 96, 3),  # b's 80 + 20 %; a's 100 costs more than 96
        ("US", "United States", 360, 2),  # b has no stock there; DE has none anywhere
    ]


async def test_list_countries_sums_stock_that_fits_the_price_and_honours_overrides(shop, clock):
    await store(shop, clock, "a", ("whatsapp", "GB", 100, 5), ("whatsapp", "US", 300, 2))
    await store(shop, clock, "b", ("whatsapp", "GB", 100, 7))
    async with shop.begin() as conn:
        await set_price_override(conn, "whatsapp", fixed_price=250, now=clock.now())
        listed = await catalogue.list_countries(conn, "whatsapp", markup_percent=MARKUP)
    # US costs 300: a fixed price of 250 would sell at a loss, so US is not offered at all.
    assert [(c.country, c.price, c.stock) for c in listed] == [("GB", 250, 12)]


async def test_quote_uses_the_cheapest_stocked_offer_and_loads_for_its_owner(shop, clock):
    user = await make_user(shop, clock, 1)
    await store(shop, clock, "a", ("whatsapp", "GB", 100, 5))
    await store(shop, clock, "b", ("whatsapp", "GB", 70, 0), ("whatsapp", "US", 10, 1))
    async with shop.begin() as conn:
        quote = await create_quote(
            conn,
            user_id=user,
            service="whatsapp",
            country="GB",
            markup_percent=MARKUP,
            now=clock.now(),
            ttl_seconds=600,
        )
    assert (quote.user_id, quote.service, quote.country, quote.price) == (user, "whatsapp", "GB", 120)
    assert quote.expires_at == clock.now() + timedelta(seconds=600)
    clock.advance(599)
    async with shop.read() as conn:
        assert await load_quote(conn, quote.id, user, clock.now()) == quote
        stored = (await conn.execute(select(quotes.c.price).where(quotes.c.id == quote.id))).scalar_one()
    assert stored == 120


async def test_quotes_honour_per_service_overrides(shop, clock):
    user = await make_user(shop, clock, 1)
    await store(shop, clock, "a", ("whatsapp", "GB", 100, 5), ("telegram", "GB", 100, 5))
    async with shop.begin() as conn:
        await set_price_override(conn, "whatsapp", markup_percent=50, now=clock.now())
    async with shop.begin() as conn:
        marked = await create_quote(
            conn,
            user_id=user,
            service="whatsapp",
            country="GB",
            markup_percent=MARKUP,
            now=clock.now(),
            ttl_seconds=60,
        )
        default = await create_quote(
            conn,
            user_id=user,
            service="telegram",
            country="GB",
            markup_percent=MARKUP,
            now=clock.now(),
            ttl_seconds=60,
        )
    assert (marked.price, default.price) == (150, 120)

    async with shop.begin() as conn:
        await set_price_override(conn, "whatsapp", fixed_price=199, now=clock.now())
        fixed = await create_quote(
            conn,
            user_id=user,
            service="whatsapp",
            country="GB",
            markup_percent=MARKUP,
            now=clock.now(),
            ttl_seconds=60,
        )
    assert fixed.price == 199

    async with shop.begin() as conn:
        await set_price_override(conn, "whatsapp", fixed_price=99, now=clock.now())
        with pytest.raises(OutOfStock):  # 99 is below every cost: never sell at a loss
            await create_quote(
                conn,
                user_id=user,
                service="whatsapp",
                country="GB",
                markup_percent=MARKUP,
                now=clock.now(),
                ttl_seconds=60,
            )
        assert await clear_price_override(conn, "whatsapp")
        assert not await clear_price_override(conn, "whatsapp")
        back = await create_quote(
            conn,
            user_id=user,
            service="whatsapp",
            country="GB",
            markup_percent=MARKUP,
            now=clock.now(),
            ttl_seconds=60,
        )
    assert back.price == 120


async def test_quote_refusals(shop, clock):
    user = await make_user(shop, clock, 1)
    await store(shop, clock, "a", ("whatsapp", "GB", 100, 0))
    kw = dict(user_id=user, markup_percent=MARKUP, now=clock.now(), ttl_seconds=60)
    async with shop.begin() as conn:
        with pytest.raises(OutOfStock):
            await create_quote(conn, service="whatsapp", country="GB", **kw)
        with pytest.raises(OutOfStock):
            await create_quote(conn, service="telegram", country="GB", **kw)
        with pytest.raises(NotFound):
            await create_quote(conn, service="nosuch", country="GB", **kw)
        with pytest.raises(NotFound):
            await create_quote(conn, service="whatsapp", country="GBR", **kw)
        assert (await conn.execute(select(func.count()).select_from(quotes))).scalar_one() == 0


async def test_a_quote_without_a_transaction_prices_and_refuses_like_one(shop, clock):
    """``new_quote`` (the bot's path: one read, one insert) against ``create_quote``."""
    user = await make_user(shop, clock, 1)
    await store(shop, clock, "a", ("whatsapp", "GB", 100, 5), ("telegram", "GB", 100, 0))
    await store(shop, clock, "b", ("whatsapp", "GB", 90, 0), ("whatsapp", "US", 10, 1))
    async with shop.begin() as conn:
        await set_price_override(conn, "whatsapp", markup_percent=50, now=clock.now())
    kw = dict(user_id=user, markup_percent=MARKUP, now=clock.now(), ttl_seconds=60)
    quote = await new_quote(shop, service="whatsapp", country="GB", **kw)
    async with shop.begin() as conn:
        same = await create_quote(conn, service="whatsapp", country="GB", **kw)
    assert quote.price == same.price == 150  # the override on the cheapest cost with stock
    async with shop.read() as conn:
        assert await load_quote(conn, quote.id, user, clock.now()) == quote

    for service, country, error in [
        ("telegram", "GB", OutOfStock),
        ("telegram", "US", OutOfStock),
        ("nosuch", "GB", NotFound),
        ("whatsapp", "GBR", NotFound),
    ]:
        with pytest.raises(error):
            await new_quote(shop, service=service, country=country, **kw)
    async with shop.begin() as conn:
        await set_price_override(conn, "whatsapp", fixed_price=99, now=clock.now())
    with pytest.raises(OutOfStock):  # below every cost of GB: never sold at a loss
        await new_quote(shop, service="whatsapp", country="GB", **kw)
    assert (await new_quote(shop, service="whatsapp", country="US", **kw)).price == 99
    async with shop.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(quotes))).scalar_one() == 3


async def test_expired_quote(shop, clock):
    user = await make_user(shop, clock, 1)
    await store(shop, clock, "a", ("whatsapp", "GB", 100, 5))
    async with shop.begin() as conn:
        quote = await create_quote(
            conn,
            user_id=user,
            service="whatsapp",
            country="GB",
            markup_percent=MARKUP,
            now=clock.now(),
            ttl_seconds=600,
        )
    clock.advance(600)
    async with shop.read() as conn:
        with pytest.raises(QuoteExpired):
            await load_quote(conn, quote.id, user, clock.now())


async def test_another_users_quote_is_not_found(shop, clock):
    owner = await make_user(shop, clock, 1)
    intruder = await make_user(shop, clock, 2)
    await store(shop, clock, "a", ("whatsapp", "GB", 100, 5))
    async with shop.begin() as conn:
        quote = await create_quote(
            conn,
            user_id=owner,
            service="whatsapp",
            country="GB",
            markup_percent=MARKUP,
            now=clock.now(),
            ttl_seconds=600,
        )
    async with shop.read() as conn:
        with pytest.raises(QuoteNotFound):
            await load_quote(conn, quote.id, intruder, clock.now())
        with pytest.raises(QuoteNotFound):
            await load_quote(conn, "not-a-quote", owner, clock.now())
        assert (await load_quote(conn, quote.id, owner, clock.now())).id == quote.id


async def test_candidates_are_cheapest_first_with_stock_and_within_max_cost(shop, clock):
    await store(shop, clock, "a", ("whatsapp", "GB", 100, 5))
    await store(shop, clock, "b", ("whatsapp", "GB", 80, 2))
    await store(shop, clock, "c", ("whatsapp", "GB", 50, 0))  # cheapest but no stock
    await store(shop, clock, "d", ("whatsapp", "GB", 150, 9))  # too expensive
    await store(shop, clock, "e", ("whatsapp", "GB", 100, 9))  # ties with a, more stock
    async with shop.read() as conn:
        got = await catalogue.candidate_offers(conn, "whatsapp", "GB", 120)
        ranked = await catalogue.candidate_offers(conn, "whatsapp", "GB", 120, providers=["a", "b", "e"])
        limited = await catalogue.candidate_offers(conn, "whatsapp", "GB", 120, providers=["e", "a"])
        none = await catalogue.candidate_offers(conn, "whatsapp", "US", 1000)
    assert got == [("b", 80, 2), ("e", 100, 9), ("a", 100, 5)]
    assert [c.provider for c in ranked] == ["b", "a", "e"]  # tie broken by priority order
    assert [c.provider for c in limited] == ["e", "a"]
    provider, cost, stock = got[0]
    assert (provider, cost, stock) == ("b", 80, 2)
    assert none == []


async def test_price_overrides_are_validated_listed_and_updated(shop, clock):
    async with shop.begin() as conn:
        with pytest.raises(InvalidInput):
            await set_price_override(conn, "whatsapp", now=clock.now())
        with pytest.raises(InvalidInput):
            await set_price_override(conn, "whatsapp", markup_percent=-5, now=clock.now())
        with pytest.raises(InvalidInput):
            await set_price_override(conn, "whatsapp", markup_percent=12.5, now=clock.now())
        with pytest.raises(InvalidInput):
            await set_price_override(conn, "whatsapp", fixed_price=0, now=clock.now())
        with pytest.raises(NotFound):
            await set_price_override(conn, "nosuch", markup_percent=10, now=clock.now())
        await set_price_override(conn, "whatsapp", markup_percent=30, now=clock.now())
        await set_price_override(conn, "google", fixed_price=500, now=clock.now())
    clock.advance(10)
    async with shop.begin() as conn:
        updated = await set_price_override(conn, "whatsapp", markup_percent=40, now=clock.now())
    async with shop.read() as conn:
        google = await get_price_override(conn, "google")
        one = await get_price_override(conn, "whatsapp")
        missing = await get_price_override(conn, "telegram")
    assert google is not None and (google.markup_percent, google.fixed_price) == (None, 500)
    assert (one.markup_percent, one.fixed_price) == (40, None)
    assert one == updated and one.updated_at == clock.now()
    assert missing is None
