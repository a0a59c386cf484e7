"""Contract: the fivesim adapter against a fake 5sim.net API v1 over loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from core import catalogue, ledger
from core.clock import FakeClock
from core.config import ConfigError, Settings, load_settings
from core.db.engine import Database
from core.invariants import check_invariants
from core.orders import OrderService
from core.providers.base import ActivationState, Provider, RentRequest
from core.providers.errors import (
    ActivationNotFound,
    AlreadyClosed,
    BadKey,
    BadService,
    Banned,
    BusinessError,
    EarlyCancelDenied,
    InsufficientProviderBalance,
    MalformedResponse,
    NotSupported,
    OutcomeUnknown,
    OutOfStock,
    PriceTooHigh,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    TransientError,
)
from core.providers.fivesim import FiveSimProvider
from core.providers.registry import build_provider
from core.quotes import create_quote
from core.users import get_or_create_user

from .fakes.fivesim_server import LIFETIME, PREFIX, FakeFiveSim

RATE = "0.01"  # 1 unit of the 5sim account currency (e.g. RUB) = 0.01 USD


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeFiveSim]:
    server = FakeFiveSim(clock)
    await server.start()
    yield server
    await server.stop()


def make(fake: FakeFiveSim, clock: FakeClock, **kw: object) -> FiveSimProvider:
    opts: dict[str, object] = dict(
        url=fake.base_url + PREFIX,
        api_key=fake.api_key,
        clock=clock,
        cost_rate=RATE,
        order_ttl_seconds=1200,
        shop_currency="USD",
        provider_currency="RUB",
        # Short reads make the slow-reply tests quick; connecting to the local fake gets longer.
        timeout=httpx.Timeout(0.5, connect=5.0),
    )
    opts.update(kw)
    return FiveSimProvider(**opts)  # type: ignore[arg-type]


@pytest.fixture
async def fs(fake: FakeFiveSim, clock: FakeClock) -> AsyncIterator[FiveSimProvider]:
    provider = make(fake, clock)
    yield provider
    await provider.aclose()


def req(
    service: str = "whatsapp", country: str = "RU", max_cost: int = 100, key: str = "order-1"
) -> RentRequest:
    return RentRequest(service=service, country=country, max_cost=max_cost, idempotency_key=key)


def assert_no_secret(exc: BaseException, fake: FakeFiveSim) -> None:
    assert fake.api_key not in str(exc)
    assert fake.api_key not in repr(exc.args)


# ---------------------------------------------------------------- success replies


async def test_port_and_capabilities(fs: FiveSimProvider) -> None:
    assert isinstance(fs, Provider)
    assert not fs.capabilities.idempotent_rent
    assert not fs.capabilities.another_code and not fs.capabilities.batch_status


async def test_balance_from_profile_in_provider_minor_units(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    fake.balance = Decimal("50.37")
    bal = await fs.balance()
    assert (bal.amount, bal.currency) == (5037, "RUB")
    [call] = fake.calls_to("profile")
    assert call.headers["Authorization"] == f"Bearer {fake.api_key}"
    assert call.headers["Accept"] == "application/json"


async def test_catalogue_per_country_prices_cheapest_stocked_operator(
    fs: FiveSimProvider, fake: FakeFiveSim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core.providers.fivesim")
    offers = {(o.service, o.country): (o.cost, o.stock) for o in await fs.catalogue()}
    # vodafone 30.00 in stock wins over virtual21 25.50 sold out; 30 × 0.01 = 30 cents
    assert offers[("whatsapp", "GB")] == (30, 12)
    assert offers[("telegram", "GB")] == (19, 40)  # 18.25 → 0.1825 USD → rounded up
    assert offers[("google", "GB")] == (8, 0)  # nothing in stock: listed without stock
    assert offers[("telegram", "US")] == (40, 7)
    # 'uk' also claims GB but 'england' is the slug; Russia and Bhutan are no shop countries;
    # 'amazon2' maps to no service
    assert set(offers) == {("whatsapp", "GB"), ("telegram", "GB"), ("google", "GB"), ("telegram", "US")}
    priced = sorted(c.query.get("country", "") for c in fake.calls_to("prices"))
    assert priced == ["england", "usa"]  # one call per sold country, never all prices
    assert all(set(c.query) == {"country"} for c in fake.calls_to("prices"))
    # the guest calls go without the key
    assert all("Authorization" not in c.headers for c in fake.calls if c.route in ("countries", "prices"))
    assert any("amazon2" in r.getMessage() and "1 products" in r.getMessage() for r in caplog.records)


async def test_catalogue_countries_list_is_cached(
    fs: FiveSimProvider, fake: FakeFiveSim, clock: FakeClock
) -> None:
    await fs.catalogue()
    await fs.catalogue()
    assert len(fake.calls_to("countries")) == 1
    assert len(fake.calls_to("prices")) == 4
    clock.advance(3601)
    await fs.catalogue()
    assert len(fake.calls_to("countries")) == 2


async def test_catalogue_countries_are_configurable(fake: FakeFiveSim, clock: FakeClock) -> None:
    fs = make(fake, clock, catalogue_countries=["ru", "GB"])
    try:
        offers = {(o.service, o.country): (o.cost, o.stock) for o in await fs.catalogue()}
    finally:
        await fs.aclose()
    assert offers[("whatsapp", "RU")] == (16, 120)  # mts 15.50 in stock; beeline sold out
    assert {country for _, country in offers} == {"RU", "GB"}


async def test_catalogue_skips_a_country_5sim_no_longer_knows(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    await fs.catalogue()
    del fake.countries["usa"]  # our cached list still has it: the prices call says bad country
    offers = {(o.service, o.country) for o in await fs.catalogue()}
    assert ("telegram", "US") not in offers and ("whatsapp", "GB") in offers


async def test_catalogue_fails_whole_on_a_transient_error(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    # a partial catalogue would drop the missing country's offers: keep the old one instead
    fake.script("prices", status=502, body=HTML, content_type="text/html")
    with pytest.raises(ProviderUnavailable):
        await fs.catalogue()


async def test_catalogue_price_calls_are_bounded(fake: FakeFiveSim, clock: FakeClock) -> None:
    fs = make(fake, clock, catalogue_concurrency=1, catalogue_countries=["GB", "RU", "US"])
    fake.script("prices", apply=True, delay=0.05, times=3)
    try:
        offers = await fs.catalogue()
    finally:
        await fs.aclose()
    assert len(fake.calls_to("prices")) == 3 and fake.max_in_flight["prices"] == 1
    assert {o.country for o in offers} == {"GB", "RU", "US"}


async def test_catalogue_handles_an_empty_country(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    fake.prices["usa"] = {}
    offers = {(o.service, o.country) for o in await fs.catalogue()}
    assert not any(country == "US" for _, country in offers)


async def test_rent_buys_any_operator_with_floor_max_price(
    fs: FiveSimProvider, fake: FakeFiveSim, clock: FakeClock
) -> None:
    rental = await fs.rent(req(max_cost=17))  # 17 cents = 17.00 RUB max
    order = fake.orders[int(rental.activation_id)]
    [call] = fake.calls_to("buy")
    assert call.path == f"{PREFIX}/user/buy/activation/russia/any/whatsapp"
    assert call.query == {"maxPrice": "17"}
    assert call.headers["Authorization"] == f"Bearer {fake.api_key}"
    assert rental.phone == order.phone and rental.phone.startswith("+")
    assert rental.cost == 16  # the price 5sim charged: 15.5 RUB
    assert rental.created_at == clock.now()
    assert rental.expires_at == clock.now() + LIFETIME  # 5sim's 15 minutes < the 20 min TTL
    assert (rental.service, rental.country) == ("whatsapp", "RU")
    assert not rental.can_request_another


async def test_rent_deadline_capped_by_ttl_and_clamped_to_now(fake: FakeFiveSim, clock: FakeClock) -> None:
    fs = make(fake, clock, order_ttl_seconds=600)
    try:
        rental = await fs.rent(req())
        assert rental.expires_at == clock.now() + timedelta(seconds=600)
        # an upstream clock an hour ahead can never push the deadline beyond now + ttl
        ahead = fake.add_order(created=clock.now() + timedelta(hours=1)).as_json()
        fake.script("buy", body=_json(ahead), content_type="application/json")
        rental = await fs.rent(req(key="order-2"))
        assert rental.created_at == clock.now()
        assert rental.expires_at == clock.now() + timedelta(seconds=600)
    finally:
        await fs.aclose()


async def test_rent_max_price_rounds_down_so_cost_never_exceeds_max(
    fake: FakeFiveSim, clock: FakeClock
) -> None:
    fs = make(fake, clock, cost_rate="0.011")
    try:
        fake.prices["russia"]["whatsapp"]["mts"]["cost"] = 45.45
        rental = await fs.rent(req(max_cost=50))  # 0.50 USD / 0.011 = 45.4545… → 45.45
        assert fake.calls_to("buy")[0].query["maxPrice"] == "45.45"
        assert rental.cost == 50  # 45.45 × 0.011 = 0.49995 → 50 cents, never above max
    finally:
        await fs.aclose()


async def test_rent_max_price_below_every_operator_is_out_of_stock(
    fs: FiveSimProvider, fake: FakeFiveSim
) -> None:
    with pytest.raises(OutOfStock):
        await fs.rent(req(max_cost=10))  # 10.00 RUB < 15.5
    assert fake.orders == {} and fake.balance == Decimal("100.00")
    with pytest.raises(PriceTooHigh):  # below one provider unit: not even asked
        await fs.rent(req(max_cost=0))
    assert len(fake.calls_to("buy")) == 1


async def test_rent_unknown_service_or_country_never_calls_upstream(
    fs: FiveSimProvider, fake: FakeFiveSim
) -> None:
    with pytest.raises(BadService):
        await fs.rent(req(service="nonexistent"))
    with pytest.raises(BadService):
        await fs.rent(req(country="AQ"))
    assert fake.calls == []


async def test_rent_uses_the_live_country_slug_after_a_catalogue(
    fs: FiveSimProvider, fake: FakeFiveSim
) -> None:
    await fs.catalogue()
    rental = await fs.rent(req(service="telegram", country="GB"))
    assert fake.calls_to("buy")[0].path.endswith("/england/any/telegram")
    assert rental.cost == 19


async def test_status_lifecycle_and_finish(fake: FakeFiveSim, clock: FakeClock) -> None:
    fake.initial_status = "PENDING"
    fs = make(fake, clock)
    try:
        rental = await fs.rent(req())
        aid = rental.activation_id
        st = await fs.status(aid)  # PENDING, sms null
        assert st.state is ActivationState.WAITING and st.messages == ()
        st = await fs.status(aid)  # RECEIVED, sms [] — waiting for an SMS, not "code received"
        assert st.state is ActivationState.WAITING and st.messages == ()
        fake.deliver(aid, "123456", "Your WhatsApp code 123-456")
        st = await fs.status(aid)
        assert st.state is ActivationState.CODE
        [first] = st.messages
        assert (first.code, first.text) == ("123456", "Your WhatsApp code 123-456")
        assert first.received_at == clock.now()
        clock.advance(30)
        fake.deliver(aid, "", "Welcome to WhatsApp")  # a second, code-less SMS
        fake.deliver(aid, "654321")
        st = await fs.status(aid)
        assert [m.code for m in st.messages] == ["123456", None, "654321"]
        assert st.messages[0].message_id == first.message_id  # stable across polls
        assert len({m.message_id for m in st.messages}) == 3
        await fs.finish(aid)
        st = await fs.status(aid)
        assert st.state is ActivationState.FINISHED and len(st.messages) == 3
        with pytest.raises(AlreadyClosed):  # "order expired"
            await fs.finish(aid)
    finally:
        await fs.aclose()


async def test_cancel_and_ban_close_unbilled(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    a = await fs.rent(req())
    b = await fs.rent(req(key="order-2"))
    await fs.cancel(a.activation_id)
    await fs.ban(b.activation_id)
    assert fake.orders[int(a.activation_id)].status == "CANCELED"
    assert fake.orders[int(b.activation_id)].status == "BANNED"
    assert fake.balance == Decimal("100.00")  # both refunded upstream
    for aid in (a.activation_id, b.activation_id):
        assert (await fs.status(aid)).state is ActivationState.CANCELLED
    with pytest.raises(AlreadyClosed):
        await fs.cancel(a.activation_id)


async def test_timeout_is_expired(fs: FiveSimProvider, fake: FakeFiveSim, clock: FakeClock) -> None:
    rental = await fs.rent(req())
    clock.advance(LIFETIME.total_seconds() + 1)
    assert (await fs.status(rental.activation_id)).state is ActivationState.EXPIRED


async def test_auto_finished_after_a_code(fs: FiveSimProvider, fake: FakeFiveSim, clock: FakeClock) -> None:
    rental = await fs.rent(req())
    fake.deliver(rental.activation_id, "111222")
    clock.advance(LIFETIME.total_seconds() + 1)
    st = await fs.status(rental.activation_id)
    assert st.state is ActivationState.FINISHED and [m.code for m in st.messages] == ["111222"]


async def test_cancel_after_a_code_is_refused_not_closed(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    rental = await fs.rent(req())
    fake.deliver(rental.activation_id, "123456")
    for close in (fs.cancel, fs.ban):
        with pytest.raises(BusinessError) as refused:  # "order has sms": finish instead
            await close(rental.activation_id)
        assert type(refused.value) is BusinessError
    assert fake.orders[int(rental.activation_id)].status == "RECEIVED"


async def test_finish_without_a_code_is_refused(fs: FiveSimProvider) -> None:
    rental = await fs.rent(req())
    with pytest.raises(BusinessError) as refused:  # "order no sms"
        await fs.finish(rental.activation_id)
    assert type(refused.value) is BusinessError


async def test_early_cancel_denied(fs: FiveSimProvider, fake: FakeFiveSim, clock: FakeClock) -> None:
    fake.cancel_wait_seconds = 60
    rental = await fs.rent(req())
    with pytest.raises(EarlyCancelDenied) as denied:  # "you need to wait time"
        await fs.cancel(rental.activation_id)
    assert denied.value.retry_at == clock.now() + timedelta(seconds=60)
    assert not isinstance(denied.value, TransientError)
    clock.set(denied.value.retry_at)
    await fs.cancel(rental.activation_id)


async def test_status_of_unknown_order(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    with pytest.raises(ActivationNotFound):
        await fs.status("999")
    assert fake.calls_to("check")[0].path == f"{PREFIX}/user/check/999"


async def test_batch_status_omits_unknown_orders(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    a = await fs.rent(req())
    b = await fs.rent(req(service="telegram", country="GB", key="order-2"))
    fake.deliver(b.activation_id, "777000")
    result = await fs.batch_status([a.activation_id, b.activation_id, "424242"])
    assert set(result) == {a.activation_id, b.activation_id}
    assert result[a.activation_id].state is ActivationState.WAITING
    assert result[b.activation_id].state is ActivationState.CODE


async def test_another_code_is_not_supported(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    with pytest.raises(NotSupported):
        await fs.request_another_code("1")
    assert fake.calls == []


async def test_active_activations_reads_the_order_history(
    fs: FiveSimProvider, fake: FakeFiveSim, clock: FakeClock
) -> None:
    assert await fs.active_activations() == []
    old = fake.add_order(created=clock.now() - timedelta(hours=2))  # long closed
    done = await fs.rent(req())
    await fs.cancel(done.activation_id)
    clock.advance(10)
    a = await fs.rent(req())
    clock.advance(10)
    b = await fs.rent(req(service="telegram", country="GB", key="order-2"))
    stranger = fake.add_order(product="amazon2", country="england")
    active = await fs.active_activations()
    assert [r.activation_id for r in active] == [a.activation_id, b.activation_id, str(stranger.id)]
    assert str(old.id) not in {r.activation_id for r in active}
    assert (active[0].service, active[0].country, active[0].cost) == ("whatsapp", "RU", 16)
    assert (active[1].service, active[1].country) == ("telegram", "GB")
    assert active[0].created_at == a.created_at and active[0].expires_at == a.expires_at
    # an unmapped product keeps its raw slug: recovery can never take it for a whatsapp order
    assert active[2].service == "5sim:amazon2" and active[2].country == "GB"
    [call, *_] = fake.calls_to("orders")
    assert call.query["category"] == "activation" and call.query["reverse"] == "true"


async def test_active_activations_keep_an_old_open_orders_age(
    fs: FiveSimProvider, fake: FakeFiveSim, clock: FakeClock
) -> None:
    # some operators keep an order open up to 30 minutes, longer than our deadline
    created = clock.now() - timedelta(minutes=25)
    old = fake.add_order(created=created, lifetime=timedelta(minutes=30))
    [rental] = await fs.active_activations()
    assert rental.activation_id == str(old.id)
    assert rental.created_at == created  # not clamped to now: recovery matches on it


async def test_active_activations_pages_until_orders_are_too_old(fake: FakeFiveSim, clock: FakeClock) -> None:
    fs = make(fake, clock, history_page_size=2)
    try:
        for hours in (5, 4, 3):  # closed long ago, oldest ids
            fake.add_order(created=clock.now() - timedelta(hours=hours), status="FINISHED")
        opened = [fake.add_order(created=clock.now() - timedelta(seconds=s)) for s in (50, 40, 30)]
        active = await fs.active_activations()
        assert [r.activation_id for r in active] == [str(o.id) for o in opened]
        offsets = [c.query["offset"] for c in fake.calls_to("orders")]
        assert offsets == ["0", "2"]  # the second page reached the old orders: stopped
    finally:
        await fs.aclose()


# ---------------------------------------------------------------- error replies


async def test_rent_errors_from_real_conditions(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    with pytest.raises(OutOfStock):  # google in Russia: every operator sold out
        await fs.rent(req(service="google"))
    fake.balance = Decimal("1.00")
    with pytest.raises(InsufficientProviderBalance):
        await fs.rent(req())
    fake.balance = Decimal("100.00")
    fake.rating = 0
    with pytest.raises(Banned):
        await fs.rent(req())
    fake.rating = 96
    fake.prices["russia"].pop("whatsapp")
    with pytest.raises(BadService):  # "no product"
        await fs.rent(req())
    assert fake.orders == {}


ERROR_REPLIES: list[tuple[str, type[ProviderError]]] = [
    ("no free phones", OutOfStock),
    ("not enough user balance", InsufficientProviderBalance),
    ("not enough rating", Banned),
    ("select country", BadService),
    ("select operator", BadService),
    ("bad country", BadService),
    ("bad operator", BadService),
    ("no product", BadService),
    ("country is incorrect", BadService),
    ("product is incorrect", BadService),
    ("server offline", ProviderUnavailable),
    ("internal error", ProviderUnavailable),
    ("reuse not possible", NotSupported),
    ("reuse false", NotSupported),
    ("reuse expired", NotSupported),
    ("order not found", ActivationNotFound),
    ("record not found", ActivationNotFound),
    ("order expired", AlreadyClosed),
    ("order has sms", BusinessError),
    ("order no sms", BusinessError),
    ("hosting order", BusinessError),
    ("you need to wait time", EarlyCancelDenied),
    ("api limit is 100 requests per second", RateLimited),
    ("ip address limit is 100 requests per second", RateLimited),
]


@pytest.mark.parametrize(("body", "cls"), ERROR_REPLIES)
@pytest.mark.parametrize("call", ["rent", "status", "cancel", "balance"])
async def test_every_error_reply_maps_to_its_class(
    body: str, cls: type[ProviderError], call: str, fs: FiveSimProvider, fake: FakeFiveSim
) -> None:
    route = {"rent": "buy", "status": "check", "cancel": "cancel", "balance": "profile"}[call]
    fake.script(route, status=400, body=body)
    with pytest.raises(cls) as raised:
        if call == "rent":
            await fs.rent(req())
        elif call == "status":
            await fs.status("1")
        elif call == "cancel":
            await fs.cancel("1")
        else:
            await fs.balance()
    assert type(raised.value) is cls
    assert raised.value.provider == "fivesim"
    assert_no_secret(raised.value, fake)


@pytest.mark.parametrize("status", [200, 400, 404])
async def test_error_text_decides_before_http_status(
    status: int, fs: FiveSimProvider, fake: FakeFiveSim
) -> None:
    fake.script("buy", status=status, body="no free phones\n")  # one client saw it with 200
    with pytest.raises(OutOfStock):
        await fs.rent(req())
    fake.script("check", status=status, body="Order not found")
    with pytest.raises(ActivationNotFound):
        await fs.status("1")


async def test_bad_key_is_401_with_an_empty_body(fake: FakeFiveSim, clock: FakeClock) -> None:
    wrong = make(fake, clock, api_key="not-the-key")
    try:
        for call in (wrong.balance(), wrong.rent(req()), wrong.status("1"), wrong.active_activations()):
            with pytest.raises(BadKey):
                await call
        assert fake.orders == {}
    finally:
        await wrong.aclose()


# ---------------------------------------------------------------- malformed replies

HTML = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.mark.parametrize("body", [HTML, "", "{", '{"balance": "x"}', '{"id": 1}', "[]", "something new"])
async def test_malformed_profile(body: str, fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    fake.script("profile", body=body, content_type="text/html")
    with pytest.raises(MalformedResponse) as raised:
        await fs.balance()
    assert not isinstance(raised.value, OutcomeUnknown)


@pytest.mark.parametrize(
    "body",
    [
        HTML,
        '{"id": 1, "status": "WAITING", "sms": []}',
        '{"id": 2, "status": "RECEIVED", "sms": []}',
        '{"id": 1, "status": "RECEIVED", "sms": {"a": 1}}',
        '{"id": 1, "status": "RECEIVED", "sms": ["x"]}',
        "null",
    ],
)
async def test_malformed_check(body: str, fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    fake.script("check", body=body, content_type="application/json")
    with pytest.raises(MalformedResponse):
        await fs.status("1")


@pytest.mark.parametrize(
    "body",
    [
        '{"russia": {"whatsapp": {"mts": {"cost": 1',
        HTML,
        "[1]",
        '{"russia": [1]}',
        '{"russia": {"whatsapp": [1]}}',
        '{"russia": {"whatsapp": {"mts": {"count": 5}}}}',
        '{"russia": {"whatsapp": {"mts": {"cost": "x", "count": 1}}}}',
        '{"russia": {"whatsapp": {"mts": {"cost": 1, "count": "x"}}}}',
        '{"england": {}}',
    ],
)
async def test_malformed_prices(body: str, fake: FakeFiveSim, clock: FakeClock) -> None:
    fs = make(fake, clock, catalogue_countries=["RU"])
    fake.script("prices", body=body, content_type="application/json")
    try:
        with pytest.raises(MalformedResponse):
            await fs.catalogue()
    finally:
        await fs.aclose()


@pytest.mark.parametrize(
    "body",
    [
        '{"id": 1, "phone": "+7999',
        HTML,
        "",
        '{"phone": "+79990000000", "price": 1, "status": "RECEIVED"}',
        '{"id": 1, "phone": "call me", "price": 1, "status": "RECEIVED"}',
        '{"id": 1, "phone": "+79990000000", "status": "RECEIVED"}',
        '{"id": 1, "phone": "+79990000000", "price": 1, "status": "NEW"}',
        "something new",
    ],
)
async def test_malformed_buy_reply_is_outcome_unknown(
    body: str, fs: FiveSimProvider, fake: FakeFiveSim
) -> None:
    fake.script("buy", body=body, content_type="application/json")
    with pytest.raises(OutcomeUnknown) as raised:
        await fs.rent(req())
    # malformed *and* possibly applied: never a definite failure that invites failover
    assert isinstance(raised.value, MalformedResponse)


@pytest.mark.parametrize(
    "body",
    [
        HTML,
        '{"Data": {"a": 1}}',
        '{"Data": [{"id": 1}]}',
        '{"Data": [',
        "[]",
        # an open order without a creation time could be matched to any lost buy
        '{"Data": [{"id": 1, "phone": "+79990000000", "price": 1, "status": "RECEIVED"}]}',
    ],
)
async def test_malformed_order_history(body: str, fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    fake.script("orders", body=body, content_type="application/json")
    with pytest.raises(MalformedResponse):
        await fs.active_activations()


async def test_close_reply_with_another_status(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    rental = await fs.rent(req())
    order = fake.orders[int(rental.activation_id)].as_json()
    fake.script("cancel", body=_json({**order, "status": "TIMEOUT"}), content_type="application/json")
    with pytest.raises(AlreadyClosed):  # closed unbilled some other way
        await fs.cancel(rental.activation_id)
    fake.script("cancel", body=_json({**order, "status": "FINISHED"}), content_type="application/json")
    with pytest.raises(BusinessError) as billed:  # closed, but billed: not what was asked
        await fs.cancel(rental.activation_id)
    assert type(billed.value) is BusinessError
    fake.script("finish", body=_json({**order, "status": "TIMEOUT"}), content_type="application/json")
    with pytest.raises(AlreadyClosed):
        await fs.finish(rental.activation_id)
    fake.script("cancel", body=_json(order), content_type="application/json")  # still open
    with pytest.raises(MalformedResponse):
        await fs.cancel(rental.activation_id)


# ---------------------------------------------------------------- transport failures


async def test_slow_read_times_out(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    fake.script("profile", delay=2.0)
    with pytest.raises(ProviderTimeout) as raised:
        await fs.balance()
    assert not isinstance(raised.value, OutcomeUnknown)


@pytest.mark.parametrize(
    "fault", [dict(apply=True, delay=2.0), dict(apply=True, reset=True)], ids=["timeout", "dropped"]
)
async def test_lost_buy_reply_is_outcome_unknown_and_found_in_the_history(
    fault: dict[str, Any], fs: FiveSimProvider, fake: FakeFiveSim
) -> None:
    fake.add_order(product="telegram", country="usa")  # someone else's, already known
    fake.script("buy", **fault)  # bought upstream, reply lost
    with pytest.raises(OutcomeUnknown):
        await fs.rent(req())
    [bought] = [o for o in fake.orders.values() if o.product == "whatsapp"]
    active = {r.activation_id: r for r in await fs.active_activations()}
    found = active[str(bought.id)]
    assert (found.service, found.country, found.phone) == ("whatsapp", "RU", bought.phone)


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(status: int, fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    fake.script("check", status=status, body=HTML, content_type="text/html")
    with pytest.raises(ProviderUnavailable) as raised:
        await fs.status("1")
    assert not isinstance(raised.value, OutcomeUnknown)
    fake.script("buy", status=status, body=HTML, content_type="text/html")
    with pytest.raises(OutcomeUnknown):
        await fs.rent(req())


async def test_html_page_with_200_on_buy_is_outcome_unknown(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    fake.script("buy", body=HTML, content_type="text/html")
    with pytest.raises(OutcomeUnknown):
        await fs.rent(req())


async def test_reset_on_read_is_unavailable(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    fake.script("check", reset=True)
    with pytest.raises(ProviderUnavailable) as raised:
        await fs.status("1")
    assert not isinstance(raised.value, OutcomeUnknown)


async def test_connection_refused_before_sending_is_not_outcome_unknown(
    fake: FakeFiveSim, clock: FakeClock
) -> None:
    fs = make(fake, clock)
    await fake.stop()
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            await fs.rent(req())
        assert not isinstance(raised.value, OutcomeUnknown)
        assert_no_secret(raised.value, fake)
    finally:
        await fs.aclose()


async def test_rate_limit_429_without_retry_after(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    fake.script("check", status=429, body="api limit is 100 requests per second")
    with pytest.raises(RateLimited) as raised:
        await fs.status("1")
    assert raised.value.retry_after is None


async def test_reservation_changes_are_serialized(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    fake.script("buy", apply=True, delay=0.1, times=3)
    rentals = await asyncio.gather(*(fs.rent(req(key=f"o{i}")) for i in range(3)))
    assert len({r.activation_id for r in rentals}) == 3
    assert fake.max_in_flight["buy"] == 1


async def test_reads_are_not_serialized(fs: FiveSimProvider, fake: FakeFiveSim) -> None:
    fake.script("profile", apply=True, delay=0.1, times=3)
    await asyncio.gather(*(fs.balance() for _ in range(3)))
    assert fake.max_in_flight["profile"] > 1


# ---------------------------------------------------------------- secrets


async def test_api_key_never_logged(
    fs: FiveSimProvider, fake: FakeFiveSim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await fs.balance()
    await fs.catalogue()
    fake.script("check", status=500, body=f"oops Bearer {fake.api_key}")
    with pytest.raises(ProviderUnavailable) as raised:
        await fs.status("1")
    assert_no_secret(raised.value, fake)
    fake.script("check", status=400, body=f"strange {fake.api_key}")
    with pytest.raises(MalformedResponse) as malformed:
        await fs.status("1")
    assert_no_secret(malformed.value, fake)
    assert any("/user/profile" in r.getMessage() for r in caplog.records)  # requests are logged
    for record in caplog.records:
        if record.name.startswith("aiohttp"):
            continue  # the fake upstream's own access log, not ours
        assert fake.api_key not in record.getMessage()


# ---------------------------------------------------------------- settings and registry


async def test_from_settings_and_registry(fake: FakeFiveSim, clock: FakeClock) -> None:
    settings = load_settings(
        _env_file=None,
        PROVIDERS="fivesim",
        FIVESIM_URL=fake.base_url + PREFIX,
        FIVESIM_API_KEY=fake.api_key,
        FIVESIM_CURRENCY="RUB",
        FIVESIM_COST_RATE=0.01,
        FIVESIM_ORDER_TTL_SECONDS=300,
        SHOP_CURRENCY="USD",
    )
    assert settings.PROVIDERS == ("fivesim",)
    fs = build_provider("fivesim", settings, clock)
    assert isinstance(fs, FiveSimProvider)
    try:
        rental = await fs.rent(req())
        assert rental.cost == 16
        assert rental.expires_at == clock.now() + timedelta(seconds=300)
    finally:
        await fs.aclose()
    with pytest.raises(ConfigError, match="^FIVESIM_API_KEY: required"):
        load_settings(_env_file=None, PROVIDERS="fivesim", FIVESIM_API_KEY=None)
    # 5sim's docs do not say which currency an account bills in: never guessed
    with pytest.raises(ConfigError, match="^FIVESIM_CURRENCY: required"):
        load_settings(_env_file=None, PROVIDERS="fivesim", FIVESIM_API_KEY="k")
    defaults = load_settings(
        _env_file=None, PROVIDERS="fivesim", FIVESIM_API_KEY="k", FIVESIM_CURRENCY="USD", SHOP_CURRENCY="USD"
    )
    (instance,) = defaults.provider_instances
    assert (instance.url, instance.cost_rate, instance.order_ttl_seconds) == ("https://5sim.net/v1", 1, 900)


# ---------------------------------------------------------------- recovery through the shop


@pytest.fixture
async def shop(
    db: Database, fake: FakeFiveSim, clock: FakeClock
) -> AsyncIterator[tuple[OrderService, FiveSimProvider]]:
    fake.prices["usa"]["telegram"]["virtual52"]["cost"] = 0.80  # a USD account, rate 1
    fs = make(fake, clock, cost_rate=1, provider_currency="USD", timeout=httpx.Timeout(1.0, connect=10.0))
    settings = Settings(
        _env_file=None,
        PROVIDERS=("fivesim",),
        SHOP_CURRENCY="USD",
        FIVESIM_API_KEY=fake.api_key,
        FIVESIM_CURRENCY="USD",
        MARKUP_PERCENT=20,
    )
    async with db.begin() as conn:
        await catalogue.seed_reference_data(conn)
    await catalogue.sync_catalogue(db, fs, clock)
    try:
        yield OrderService(db, clock, {"fivesim": fs}, settings), fs
    finally:
        await fs.aclose()


async def _purchase(db: Database, orders: OrderService, clock: FakeClock, key: str) -> object:
    now = clock.now()
    async with db.begin() as conn:
        user = await get_or_create_user(conn, telegram_id=1, now=now)
        await ledger.post_transfer(
            conn,
            id=ledger.new_id(),
            debit=await ledger.system_account(conn, ledger.TOPUPS),
            credit=user.wallet_account_id,
            amount=500,
            code="topup",
            now=now,
        )
        quote = await create_quote(
            conn,
            user_id=user.id,
            service="telegram",
            country="US",
            markup_percent=20,
            now=now,
            ttl_seconds=600,
        )
    assert quote.price == 96
    return await orders.purchase(user_id=user.id, quote_id=quote.id, idempotency_key=key)


async def test_dropped_buy_reply_is_recovered_into_the_same_order(
    shop: tuple[OrderService, FiveSimProvider], db: Database, fake: FakeFiveSim, clock: FakeClock
) -> None:
    orders, _ = shop
    stranger = fake.add_order(product="whatsapp", country="usa")  # open, different product
    fake.script("buy", apply=True, reset=True)  # bought upstream, connection dropped
    order = await _purchase(db, orders, clock, "k1")
    assert order.status == "reserving"  # type: ignore[attr-defined]
    [bought] = [o for o in fake.orders.values() if o.id != stranger.id]
    assert fake.calls_to("buy")[0].query == {"maxPrice": "0.96"}  # the user's price, no more
    clock.advance(121)
    settled = await orders.recover_order(order.id)  # type: ignore[attr-defined]
    assert settled.status == "waiting" and settled.activation_id == str(bought.id)
    assert settled.cost == 80
    assert len(fake.calls_to("buy")) == 1  # recovered, never bought twice
    assert await check_invariants(db, clock.now()) == []


async def test_failed_buy_is_not_matched_to_an_old_open_order(
    shop: tuple[OrderService, FiveSimProvider], db: Database, fake: FakeFiveSim, clock: FakeClock
) -> None:
    orders, _ = shop
    # an unowned open order of the same product and country, bought 25 minutes ago
    stale = fake.add_order(
        product="telegram",
        country="usa",
        price="0.80",
        created=clock.now() - timedelta(minutes=25),
        lifetime=timedelta(minutes=30),
    )
    fake.script("buy", status=502, body=HTML, content_type="text/html")  # nothing bought
    order = await _purchase(db, orders, clock, "k1")
    assert order.status == "reserving"  # type: ignore[attr-defined]
    clock.advance(121)
    settled = await orders.recover_order(order.id)  # type: ignore[attr-defined]
    assert settled.status == "failed" and settled.activation_id is None
    assert fake.orders[stale.id].status == "RECEIVED"
    assert await check_invariants(db, clock.now()) == []


def _json(doc: object) -> str:
    import json

    return json.dumps(doc)


async def test_catalogue_gaps_name_unmapped_products_and_countries(
    fs: FiveSimProvider, fake: FakeFiveSim
) -> None:
    fake.countries["atlantis"] = {"iso": {}, "prefix": {"+999": 1}, "text_en": "Atlantis"}
    fake.prices["england"]["madeupapp"] = {"virtual21": {"cost": 1.0, "count": 3}}
    gaps = await fs.catalogue_gaps()
    assert "madeupapp" in gaps.services and "telegram" not in gaps.services
    assert gaps.countries == ("atlantis",)
