"""Delivery statistics from real orders, folded race-safely, and purchases routed by them
(SQLite always, PostgreSQL with NUMBERSHOP_TEST_POSTGRES_URL)."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest
from sqlalchemy import select

from core import delivery_stats, quotes
from core.db.tables import delivery_stats as stats_table
from core.db.tables import delivery_watermark
from core.routing import RoutingParams, rank
from tests.integration.orders_support import ScriptedProvider, Shop

LAG = 30


@pytest.fixture
async def shop(db, clock):
    s = Shop(
        db,
        clock,
        {
            "alpha": ScriptedProvider("alpha", clock, cost=40),
            "beta": ScriptedProvider("beta", clock, cost=45),
        },
        ROUTING_EXPLORATION=0.0,
        ROUTING_FOLD_LAG_SECONDS=LAG,
    )
    await s.setup_catalogue()
    return s


async def buy(shop, user, key, **quote_args):
    if quote_args:
        q = await quotes.new_quote(
            shop.db,
            user_id=user.id,
            service="whatsapp",
            country="GB",
            markup_percent=20,
            now=shop.clock.now(),
            ttl_seconds=600,
            **quote_args,
        )
        qid = q.id
    else:
        qid = await shop.quote(user.id, price=100)
    return await shop.orders.purchase(user_id=user.id, quote_id=qid, idempotency_key=key)


async def deliver(shop, order, code="123456"):
    shop.providers[order.provider].deliver(order.activation_id, code)
    await shop.orders.poll_orders([order.id])
    return await shop.orders.get_order(order.id)


async def fold(shop):
    return await delivery_stats.fold_closed_orders(shop.db, shop.clock, shop.settings)


async def stats_of(shop, provider):
    async with shop.db.read() as conn:
        return (await delivery_stats.for_pair(conn, "whatsapp", "GB")).get(provider)


async def test_closed_orders_fold_into_rentals_codes_and_first_code_time(shop, clock):
    user = await shop.user(1, funds=1000)
    got_code = await buy(shop, user, "k1")
    expires = await buy(shop, user, "k2")
    quick_cancel = await buy(shop, user, "k3")
    late_cancel = await buy(shop, user, "k4")
    assert {o.provider for o in (got_code, expires, quick_cancel, late_cancel)} == {"alpha"}
    await shop.orders.cancel(quick_cancel.id, user_id=user.id)  # changed their mind: tells nothing
    clock.advance(45)
    assert (await deliver(shop, got_code)).status == "completed"
    clock.advance(200)
    await shop.orders.cancel(late_cancel.id, user_id=user.id)  # waited 245 s for nothing
    clock.set(expires.expires_at + timedelta(seconds=1))
    assert await shop.orders.expire_due() == 1

    assert await fold(shop) == 3  # the expiry is younger than the lag
    clock.advance(LAG)
    assert await fold(shop) == 1
    assert await fold(shop) == 0  # nothing new: the watermark moved past everything
    alpha = await stats_of(shop, "alpha")
    assert alpha.rented_total == 3 and alpha.delivered_total == 1
    assert alpha.mean_first_code_seconds == pytest.approx(45)
    assert await stats_of(shop, "beta") is None
    await shop.assert_books_clean()


async def test_concurrent_folds_count_every_order_once(shop, clock):
    users = [await shop.user(i, funds=1000) for i in range(1, 4)]
    bought = [await buy(shop, u, f"k{u.id}-{n}") for u in users for n in range(4)]
    for n, order in enumerate(bought):
        clock.advance(1)
        if n % 2:
            await deliver(shop, order)
        else:
            await shop.orders.cancel(order.id, user_id=order.user_id)
    clock.advance(LAG + 300)
    # Cancels counted only after 180 s held: move the cancelled ones' history far enough
    # by folding with a zero threshold through the settings.
    shop.settings.ROUTING_CANCEL_COUNTS_AFTER_SECONDS = 0
    results = await asyncio.gather(
        *(delivery_stats.fold_closed_orders(shop.db, clock, shop.settings, batch=5) for _ in range(4))
    )
    assert all(isinstance(r, int) for r in results)
    assert sum(results) <= len(bought)
    await fold(shop)  # whatever the racers left behind (a loser stops at its first lost batch)
    alpha = await stats_of(shop, "alpha")
    assert alpha.rented_total == len(bought)  # every order once, none twice
    assert alpha.delivered_total == len(bought) // 2
    async with shop.db.read() as conn:
        mark = (await conn.execute(select(delivery_watermark))).one()
        rows = (await conn.execute(select(stats_table))).all()
    assert mark.folded == len(bought) and len(rows) == 1


async def test_purchases_go_where_codes_arrive(shop, clock):
    user = await shop.user(1, funds=5000)
    # Alpha (cheaper) rented 6 numbers and delivered none; beta has no record yet.
    for n in range(6):
        order = await buy(shop, user, f"a{n}")
        assert order.provider == "alpha"
        await shop.orders.cancel(order.id, user_id=user.id)
    shop.settings.ROUTING_CANCEL_COUNTS_AFTER_SECONDS = 0
    clock.advance(LAG + 1)
    assert await fold(shop) == 6
    # The avoid-after-expiry rule must not be what decides here.
    shop.settings.ROUTING_AVOID_AFTER_EXPIRY_SECONDS = 0
    order = await buy(shop, user, "next")
    assert order.provider == "beta"  # 45 / (2/3) beats 40 / (2/9)
    wallet = await shop.wallet(user)
    assert wallet.held == 100 and wallet.balance == 5000
    await shop.assert_books_clean()


async def test_after_an_expiry_the_next_number_comes_from_another_provider(shop, clock):
    user = await shop.user(1, funds=1000)
    first = await buy(shop, user, "k1")
    assert first.provider == "alpha"
    clock.set(first.expires_at + timedelta(seconds=1))
    assert await shop.orders.expire_due() == 1
    again = await buy(shop, user, "k2")  # no hint from the client: core remembers the expiry
    assert again.provider == "beta"
    assert (await shop.wallet(user)).held == 100
    # Long after, the cheaper provider is first again.
    await shop.orders.cancel(again.id, user_id=user.id)
    clock.advance(shop.settings.ROUTING_AVOID_AFTER_EXPIRY_SECONDS + 1)
    later = await buy(shop, user, "k3")
    assert later.provider == "alpha"
    assert (await shop.wallet(user)).balance == 1000
    await shop.assert_books_clean()


async def test_another_number_names_the_previous_order(shop, clock):
    user = await shop.user(1, funds=1000)
    first = await buy(shop, user, "k1")
    await shop.orders.cancel(first.id, user_id=user.id)
    shop.settings.ROUTING_AVOID_AFTER_EXPIRY_SECONDS = 0
    again = await buy(shop, user, "k2", after_order=first.id)
    assert again.provider == "beta"
    # Someone else's order is no hint: it is not theirs to name.
    other = await shop.user(2, funds=1000)
    theirs = await buy(shop, other, "o1", after_order=first.id)
    assert theirs.provider == "alpha"
    direct = await buy(shop, user, "k3", avoid_provider="alpha")
    assert direct.provider == "beta"


def test_rank_reads_what_the_fold_wrote(clock):
    # The benchmark drives the same two functions; a smoke check that they fit together.
    outcomes = [delivery_stats.Outcome("a", "wa", "GB", clock.now(), i % 4 == 0) for i in range(40)] + [
        delivery_stats.Outcome("b", "wa", "GB", clock.now(), i % 4 != 0) for i in range(40)
    ]
    folded = delivery_stats.apply_outcomes({}, outcomes, 3600)
    ranked = rank(
        [("a", 40), ("b", 60)],
        {k[0]: v for k, v in folded.items()},
        params=RoutingParams(exploration=0.0),
        now=clock.now(),
        rng=random.Random(0),
    )
    assert [s.provider for s in ranked] == ["b", "a"]
