"""Routing and failover with the real adapters over loopback HTTP and a real database.

Two upstreams: ``smsactivate`` (cheaper, so tried first) on a fake handler_api.php server and
``textverified`` on a fake API v2, both behind one breaker board, under the lead's
``OrderService``. Whatever the cheaper provider does wrong, the user gets at most one number,
pays through exactly one hold, and the shop rents upstream at most once; when the answer was
lost (outcome unknown) nothing fails over, and recovery settles it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from core import catalogue, ledger
from core.clock import FakeClock
from core.config import Settings
from core.db.engine import Database
from core.db.tables import transfers
from core.errors import NoProviderAvailable
from core.invariants import check_invariants
from core.orders import OrderService
from core.providers.breaker import BreakerBoard
from core.providers.smsactivate import SmsActivateProvider
from core.providers.textverified import TextVerifiedProvider
from core.quotes import create_quote
from core.users import get_or_create_user

from .fakes.smsactivate_server import PATH, FakeSmsActivate
from .fakes.textverified_server import FakeTextVerified

SA_COST, TV_COST = "0.80", "0.90"  # USD; markup 20 % → the user's price is 96 cents
PRICE = 96


@dataclass
class World:
    db: Database
    clock: FakeClock
    sa: FakeSmsActivate
    tv: FakeTextVerified
    board: BreakerBoard
    orders: OrderService
    providers: dict

    async def user(self, telegram_id: int, funds: int) -> object:
        now = self.clock.now()
        async with self.db.begin() as conn:
            user = await get_or_create_user(conn, telegram_id=telegram_id, now=now)
            await ledger.post_transfer(
                conn,
                id=ledger.new_id(),
                debit=await ledger.system_account(conn, ledger.TOPUPS),
                credit=user.wallet_account_id,
                amount=funds,
                code="topup",
                now=now,
            )
        return user

    async def quote(self, user: object) -> str:
        async with self.db.begin() as conn:
            quote = await create_quote(
                conn,
                user_id=user.id,
                service="telegram",
                country="US",  # type: ignore[attr-defined]
                markup_percent=20,
                now=self.clock.now(),
                ttl_seconds=600,
            )
        assert quote.price == PRICE
        return quote.id

    async def buy(self, user: object, key: str, quote_id: str | None = None) -> object:
        quote_id = quote_id or await self.quote(user)
        return await self.orders.purchase(
            user_id=user.id,
            quote_id=quote_id,  # type: ignore[attr-defined]
            idempotency_key=key,
        )

    async def wallet(self, user: object) -> ledger.AccountBalance:
        async with self.db.read() as conn:
            return await ledger.balance_of(conn, user.wallet_account_id)  # type: ignore[attr-defined]

    async def holds(self, order_id: str) -> list:
        async with self.db.read() as conn:
            return list(
                (await conn.execute(select(transfers).where(transfers.c.order_id == order_id))).mappings()
            )

    async def assert_books_clean(self) -> None:
        assert await check_invariants(self.db, self.clock.now()) == []


@pytest.fixture
async def world(db: Database, clock: FakeClock) -> AsyncIterator[World]:
    sa_fake, tv_fake = FakeSmsActivate(clock), FakeTextVerified(clock)
    sa_fake.prices = {187: {"tg": {"cost": SA_COST, "count": 50}}}
    tv_fake.prices["telegram"] = Decimal(TV_COST)
    tv_fake.stock = {"telegram": 50}
    await sa_fake.start()
    await tv_fake.start()
    settings = Settings(
        _env_file=None,
        PROVIDERS=("smsactivate", "textverified"),
        SHOP_CURRENCY="USD",
        SMSACTIVATE_URL=sa_fake.base_url + PATH,
        SMSACTIVATE_CURRENCY="USD",
        SMSACTIVATE_API_KEY=sa_fake.api_key,
        SMSACTIVATE_COST_RATE=1.0,
        TEXTVERIFIED_API_USERNAME=tv_fake.username,
        TEXTVERIFIED_API_KEY=tv_fake.api_key,
        MARKUP_PERCENT=20,
    )
    board = BreakerBoard(threshold=2, ttl_s=60, clock=clock)
    # Reading the reply times out well before the 2 s a "lost answer" takes; connecting to a
    # local fake never should (CI once waited 0.5 s for a connect under load and failed setup).
    timeout = httpx.Timeout(1.0, connect=10.0, pool=10.0)
    providers = {
        "smsactivate": board.guard(
            SmsActivateProvider(
                url=sa_fake.base_url + PATH,
                api_key=sa_fake.api_key,
                clock=clock,
                cost_rate=1.0,
                name="smsactivate",
                shop_currency="USD",
                timeout=timeout,
            )
        ),
        "textverified": board.guard(
            TextVerifiedProvider(
                url=tv_fake.base_url,
                username=tv_fake.username,
                api_key=tv_fake.api_key,
                clock=clock,
                timeout=timeout,
                conflict_retry_delays=(0.01,),
            )
        ),
    }
    async with db.begin() as conn:
        await catalogue.seed_reference_data(conn)
    for provider in providers.values():
        await catalogue.sync_catalogue(db, provider, clock)
    orders = OrderService(db, clock, providers, settings, board=board)
    w = World(db, clock, sa_fake, tv_fake, board, orders, providers)
    try:
        yield w
    finally:
        for provider in providers.values():
            await provider.aclose()
        await sa_fake.stop()
        await tv_fake.stop()


async def test_catalogue_sync_made_smsactivate_the_cheaper_candidate(world: World) -> None:
    async with world.db.read() as conn:
        found = await catalogue.candidate_offers(
            conn, "telegram", "US", PRICE, providers=list(world.providers)
        )
    assert [(c.provider, c.cost) for c in found] == [("smsactivate", 80), ("textverified", 90)]


async def test_healthy_cheaper_provider_is_used(world: World) -> None:
    user = await world.user(1, funds=500)
    order = await world.buy(user, "k1")
    assert order.status == "waiting" and order.provider == "smsactivate"
    assert order.cost == 80
    assert list(world.sa.activations) == [order.activation_id]
    assert world.tv.verifications == {}
    await world.assert_books_clean()


@pytest.mark.parametrize("failure", ["ERROR_SQL", "NO_NUMBERS", "NO_BALANCE", "down"])
async def test_failover_to_the_healthy_provider_inside_one_hold(failure: str, world: World) -> None:
    user = await world.user(1, funds=500)
    if failure == "down":
        await world.sa.stop()  # connection refused: nothing was sent
    else:
        world.sa.script("getNumberV2", body=failure)
    order = await world.buy(user, "k1")

    assert order.status == "waiting" and order.provider == "textverified"
    # exactly one upstream rental, at the healthy provider, keyed by the order id
    assert list(world.tv.verifications) == [order.activation_id]
    assert world.sa.activations == {}
    [create] = world.tv.calls_to("create")
    assert create.headers["Idempotency-Key"] == order.id
    assert create.body["maxPrice"] == 0.96  # never more than the user's confirmed price
    assert order.cost == 90
    # exactly one hold, still pending, for the quoted price
    [hold] = await world.holds(order.id)
    assert (hold["amount"], hold["kind"]) == (PRICE, "pending")
    wallet = await world.wallet(user)
    assert (wallet.balance, wallet.held, wallet.available) == (500, PRICE, 500 - PRICE)
    await world.assert_books_clean()


async def test_open_breaker_is_skipped_without_calling_it(world: World) -> None:
    user = await world.user(1, funds=1000)
    world.sa.script("getNumberV2", body="ERROR_SQL", times=2)
    for key in ("k1", "k2"):
        order = await world.buy(user, key)
        assert order.provider == "textverified"
    assert world.board.states()["smsactivate"].state == "opened"
    calls = len(world.sa.calls)
    order = await world.buy(user, "k3")
    assert order.status == "waiting" and order.provider == "textverified"
    assert len(world.sa.calls) == calls  # routed around, not even asked
    assert len(world.tv.verifications) == 3 and world.sa.activations == {}
    world.clock.advance(61)  # the TTL passed: the cheaper provider gets its probe again
    order = await world.buy(user, "k4")
    assert order.provider == "smsactivate"
    assert world.board.states()["smsactivate"].state == "closed"
    await world.assert_books_clean()


async def test_lost_answer_never_fails_over_and_recovery_settles_it(world: World) -> None:
    user = await world.user(1, funds=500)
    # Rented upstream, reply lost: held well past the 1 s read timeout, so a busy CI loop that
    # notices the timeout late still sees a lost answer, not a slow one.
    world.sa.script("getNumberV2", apply=True, delay=5.0)
    order = await world.buy(user, "k1")
    assert order.status == "reserving" and order.provider == "smsactivate"
    assert world.tv.verifications == {}  # no second number bought elsewhere
    assert len(await world.holds(order.id)) == 1
    [aid] = list(world.sa.activations)
    settled = await world.orders.recover_order(order.id)
    assert settled.status == "waiting" and settled.activation_id == aid
    assert len(world.sa.activations) == 1 and world.tv.verifications == {}
    await world.assert_books_clean()


async def test_all_providers_failing_charges_nothing(world: World) -> None:
    user = await world.user(1, funds=500)
    world.sa.script("getNumberV2", body="ERROR_SQL")
    world.tv.script("create", status=429, headers={"Retry-After": "30"})
    with pytest.raises(NoProviderAvailable):
        await world.buy(user, "k1")
    wallet = await world.wallet(user)
    assert (wallet.balance, wallet.held, wallet.available) == (500, 0, 500)
    assert world.sa.activations == {} and world.tv.verifications == {}
    await world.assert_books_clean()


async def test_a_retried_purchase_with_the_same_key_buys_once(world: World) -> None:
    user = await world.user(1, funds=500)
    world.sa.script("getNumberV2", body="ERROR_SQL")
    quote_id = await world.quote(user)
    first = await world.buy(user, "k1", quote_id)
    again = await world.buy(user, "k1", quote_id)
    assert again.id == first.id and again.activation_id == first.activation_id
    assert len(world.tv.verifications) == 1 and world.sa.activations == {}
    assert (await world.wallet(user)).held == PRICE
    await world.assert_books_clean()
