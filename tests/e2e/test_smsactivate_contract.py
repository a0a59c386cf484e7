"""Contract: the smsactivate adapter against a fake handler_api.php server over loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.clock import FakeClock
from core.config import ConfigError, load_settings
from core.providers.base import ActivationState, Provider, RentRequest
from core.providers.cost_rate import CostRate
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
    TooManyActive,
    TransientError,
)
from core.providers.handlerapi import HandlerApiProvider
from core.providers.registry import build_provider
from core.providers.smsactivate import SmsActivateProvider

from .fakes.smsactivate_server import PATH, FakeSmsActivate

RATE = "0.01"  # 1 provider unit (e.g. RUB) = 0.01 USD


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeSmsActivate]:
    server = FakeSmsActivate(clock)
    await server.start()
    yield server
    await server.stop()


def make(fake: FakeSmsActivate, clock: FakeClock, **kw: object) -> SmsActivateProvider:
    opts: dict[str, object] = dict(
        url=fake.base_url + PATH,
        api_key=fake.api_key,
        clock=clock,
        cost_rate=RATE,
        name="smsactivate",
        order_ttl_seconds=1200,
        shop_currency="USD",
        provider_currency="RUB",
        # Short reads make the slow-reply tests quick; connecting to the local fake gets
        # longer, or a busy CI machine fails an unrelated test with ConnectTimeout.
        timeout=httpx.Timeout(0.5, connect=5.0),
    )
    opts.update(kw)
    return SmsActivateProvider(**opts)  # type: ignore[arg-type]


@pytest.fixture
async def sa(fake: FakeSmsActivate, clock: FakeClock) -> AsyncIterator[SmsActivateProvider]:
    provider = make(fake, clock)
    yield provider
    await provider.aclose()


def req(
    service: str = "whatsapp", country: str = "RU", max_cost: int = 100, key: str = "order-1"
) -> RentRequest:
    return RentRequest(service=service, country=country, max_cost=max_cost, idempotency_key=key)


def assert_no_secret(exc: BaseException, fake: FakeSmsActivate) -> None:
    assert fake.api_key not in str(exc)
    assert fake.api_key not in repr(exc.args)


# ---------------------------------------------------------------- success replies


async def test_port_and_capabilities(sa: SmsActivateProvider) -> None:
    assert isinstance(sa, Provider)
    assert sa.capabilities.batch_status and sa.capabilities.another_code
    assert not sa.capabilities.idempotent_rent


async def test_balance_in_provider_minor_units(sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    fake.balance = fake.balance.__class__("50.30")
    bal = await sa.balance()
    assert (bal.amount, bal.currency) == (5030, "RUB")


async def test_catalogue_maps_services_countries_and_converts_costs(sa: SmsActivateProvider) -> None:
    offers = {(o.service, o.country): (o.cost, o.stock) for o in await sa.catalogue()}
    # 15.5 RUB × 0.01 = 0.155 USD → rounded up to 16 cents
    assert offers[("whatsapp", "RU")] == (16, 120)
    assert offers[("telegram", "RU")] == (20, 3)
    assert offers[("whatsapp", "GB")] == (30, 0)  # sold out still listed, with no stock
    assert offers[("google", "GB")] == (13, 40)  # 12.25 → 0.1225 → 13
    assert offers[("telegram", "US")] == (40, 7)  # from 187, real US numbers
    # unknown service code, virtual-US id 12 and the invisible country are not offered
    assert set(offers) == {
        ("whatsapp", "RU"),
        ("telegram", "RU"),
        ("whatsapp", "GB"),
        ("google", "GB"),
        ("telegram", "US"),
    }


async def test_catalogue_reference_lists_are_cached(
    sa: SmsActivateProvider, fake: FakeSmsActivate, clock: FakeClock
) -> None:
    await sa.catalogue()
    await sa.catalogue()
    assert len(fake.calls_to("getCountries")) == 1
    assert len(fake.calls_to("getServicesList")) == 1
    assert len(fake.calls_to("getPrices")) == 2
    clock.advance(3601)
    await sa.catalogue()
    assert len(fake.calls_to("getCountries")) == 2


async def test_rent_v2_converts_cost_sets_deadline_and_sends_floor_max_price(
    sa: SmsActivateProvider, fake: FakeSmsActivate, clock: FakeClock
) -> None:
    rental = await sa.rent(req(max_cost=17))  # 17 cents = 17.00 RUB max
    assert rental.activation_id in fake.activations
    act = fake.activations[rental.activation_id]
    assert rental.phone == act.phone
    assert rental.cost == 16
    assert rental.expires_at == clock.now() + timedelta(seconds=1200)
    assert rental.created_at == clock.now()
    assert rental.service == "whatsapp" and rental.country == "RU"
    assert rental.can_request_another
    call = fake.calls_to("getNumberV2")[0]
    assert call.query["service"] == "wa" and call.query["country"] == "0"
    assert call.query["maxPrice"] == "17"


async def test_rent_max_price_rounds_down_so_cost_never_exceeds_max(
    fake: FakeSmsActivate, clock: FakeClock
) -> None:
    sa = make(fake, clock, cost_rate="0.011")
    try:
        fake.prices[0]["wa"]["cost"] = "45.45"
        rental = await sa.rent(req(max_cost=50))  # 0.50 USD / 0.011 = 45.4545… → 45.45
        assert fake.calls_to("getNumberV2")[0].query["maxPrice"] == "45.45"
        assert rental.cost == 50  # 45.45 × 0.011 = 0.49995 → 50 cents, never above max
    finally:
        await sa.aclose()


async def test_rent_activation_time_is_clamped_to_now(
    sa: SmsActivateProvider, fake: FakeSmsActivate, clock: FakeClock
) -> None:
    # A provider in another time zone reports a naive time three hours ahead.
    fake.script(
        "getNumberV2",
        body='{"activationId": 5, "phoneNumber": "79990000000", '
        '"activationCost": 15.5, "activationTime": "2026-01-01 15:00:00"}',
        content_type="application/json",
    )
    rental = await sa.rent(req())
    assert rental.expires_at == clock.now() + timedelta(seconds=1200)
    clock.advance(30)
    fake.script(
        "getNumberV2",
        body='{"activationId": 6, "phoneNumber": "79990000001", '
        '"activationCost": 15.5, "activationTime": "2026-01-01 12:00:10"}',
        content_type="application/json",
    )
    rental = await sa.rent(req(key="order-2"))
    assert rental.created_at == clock.now() - timedelta(seconds=20)
    assert rental.expires_at == rental.created_at + timedelta(seconds=1200)


async def test_rent_falls_back_to_getnumber_when_v2_is_refused(
    fake: FakeSmsActivate, clock: FakeClock
) -> None:
    fake.v2 = False
    sa = make(fake, clock)
    try:
        first = await sa.rent(req())
        second = await sa.rent(req(key="order-2"))
    finally:
        await sa.aclose()
    assert len(fake.calls_to("getNumberV2")) == 1  # refused once, never asked again
    assert len(fake.calls_to("getNumber")) == 2
    assert first.activation_id in fake.activations and second.activation_id in fake.activations
    assert first.cost == 16  # looked up through getPrices
    assert first.expires_at == clock.now() + timedelta(seconds=1200)


async def test_rent_unknown_service_or_country_never_calls_upstream(
    sa: SmsActivateProvider, fake: FakeSmsActivate
) -> None:
    with pytest.raises(BadService):
        await sa.rent(req(service="nonexistent"))
    with pytest.raises(BadService):
        await sa.rent(req(country="AQ"))
    assert fake.calls == []


async def test_status_lifecycle(sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    rental = await sa.rent(req())
    aid = rental.activation_id
    st = await sa.status(aid)
    assert st.state is ActivationState.WAITING and st.messages == ()
    fake.deliver(aid, "123456")
    st = await sa.status(aid)
    assert st.state is ActivationState.CODE
    assert [m.code for m in st.messages] == ["123456"]
    first_id = st.messages[0].message_id
    await sa.request_another_code(aid)
    st = await sa.status(aid)  # STATUS_WAIT_RETRY:<last code>
    assert st.state is ActivationState.CODE and st.messages[0].message_id == first_id
    fake.deliver(aid, "654321")
    st = await sa.status(aid)
    assert [m.code for m in st.messages] == ["654321"]
    await sa.finish(aid)
    with pytest.raises(AlreadyClosed):
        await sa.finish(aid)


async def test_status_wait_resend_and_cancel(
    sa: SmsActivateProvider, fake: FakeSmsActivate, clock: FakeClock
) -> None:
    rental = await sa.rent(req())
    fake.script("getStatus", body="STATUS_WAIT_RESEND")
    assert (await sa.status(rental.activation_id)).state is ActivationState.WAITING
    clock.advance(121)
    await sa.cancel(rental.activation_id)
    assert (await sa.status(rental.activation_id)).state is ActivationState.CANCELLED


async def test_status_of_unknown_activation(sa: SmsActivateProvider) -> None:
    with pytest.raises(ActivationNotFound):
        await sa.status("999")


@pytest.mark.parametrize("fmt", ["wrapped", "list"])
async def test_batch_status_and_active_activations(
    fmt: str, sa: SmsActivateProvider, fake: FakeSmsActivate
) -> None:
    fake.active_format = fmt
    assert await sa.batch_status(["1"]) == {}
    assert await sa.active_activations() == []
    a = await sa.rent(req())
    b = await sa.rent(req(service="google", country="GB", key="order-2"))
    fake.deliver(b.activation_id, "777000", "G-777000 is your code")
    result = await sa.batch_status([a.activation_id, b.activation_id, "424242"])
    assert set(result) == {a.activation_id, b.activation_id}  # unknown ids simply absent
    assert result[a.activation_id].state is ActivationState.WAITING
    assert result[b.activation_id].state is ActivationState.CODE
    msg = result[b.activation_id].messages[0]
    assert (msg.code, msg.text) == ("777000", "G-777000 is your code")
    # the same message gets the same id through getStatus, so it is recorded once
    single = await sa.status(b.activation_id)
    assert single.messages[0].message_id == msg.message_id
    active = {r.activation_id: r for r in await sa.active_activations()}
    assert set(active) == {a.activation_id, b.activation_id}
    assert (active[b.activation_id].service, active[b.activation_id].country) == ("google", "GB")
    assert active[b.activation_id].cost == 13
    assert len(fake.calls_to("getActiveActivations")) == 4  # one call per batch


async def test_early_cancel_denied_then_later_success(
    sa: SmsActivateProvider, fake: FakeSmsActivate, clock: FakeClock
) -> None:
    rental = await sa.rent(req())
    with pytest.raises(EarlyCancelDenied) as denied:
        await sa.cancel(rental.activation_id)
    assert denied.value.retry_at == clock.now() + timedelta(seconds=120)
    assert not isinstance(denied.value, TransientError)
    clock.set(denied.value.retry_at)
    await sa.cancel(rental.activation_id)
    assert fake.activations[rental.activation_id].state == "cancel"
    with pytest.raises(AlreadyClosed):
        await sa.cancel(rental.activation_id)


async def test_another_code_before_any_code_is_refused(sa: SmsActivateProvider) -> None:
    rental = await sa.rent(req())
    with pytest.raises(BusinessError):
        await sa.request_another_code(rental.activation_id)


# ---------------------------------------------------------------- error replies


async def test_rent_errors_from_real_conditions(sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    with pytest.raises(OutOfStock):
        await sa.rent(req(service="whatsapp", country="GB"))  # count 0
    with pytest.raises(PriceTooHigh) as too_high:
        await sa.rent(req(max_cost=10))  # 10.00 RUB < 15.5
    assert too_high.value.min_price == 16  # converted to shop minor units
    fake.balance = fake.balance.__class__("1.00")
    with pytest.raises(InsufficientProviderBalance):
        await sa.rent(req())
    fake.balance = fake.balance.__class__("100.00")
    fake.max_active = 0
    with pytest.raises(TooManyActive):
        await sa.rent(req())


ERROR_REPLIES = [
    ("NO_NUMBERS", OutOfStock),
    ("WRONG_MAX_PRICE:25.5", PriceTooHigh),
    ("NO_BALANCE", InsufficientProviderBalance),
    ("BAD_KEY", BadKey),
    ("BANNED:2026-01-02 10:00:00", Banned),
    ("BAD_SERVICE", BadService),
    ("BAD_STATUS", BusinessError),
    ("NO_ACTIVATION", ActivationNotFound),
    ("WRONG_ACTIVATION_ID", ActivationNotFound),
    ("TOO_MANY_ACTIVE_RENTALS", TooManyActive),
    ("CHANNELS_LIMIT", TooManyActive),
    ("ERROR_SQL", ProviderUnavailable),
    ("EARLY_CANCEL_DENIED", EarlyCancelDenied),
    ("ALREADY_CANCEL", AlreadyClosed),
    ("ALREADY_FINISH", AlreadyClosed),
]


@pytest.mark.parametrize(("body", "cls"), ERROR_REPLIES)
@pytest.mark.parametrize("call", ["rent", "status", "cancel", "balance"])
async def test_every_error_reply_maps_to_its_class(
    body: str, cls: type[ProviderError], call: str, sa: SmsActivateProvider, fake: FakeSmsActivate
) -> None:
    action = {"rent": "getNumberV2", "status": "getStatus", "cancel": "setStatus", "balance": "getBalance"}[
        call
    ]
    fake.script(action, body=body)
    with pytest.raises(cls) as raised:
        if call == "rent":
            await sa.rent(req())
        elif call == "status":
            await sa.status("1")
        elif call == "cancel":
            await sa.cancel("1")
        else:
            await sa.balance()
    assert type(raised.value) is cls
    assert raised.value.provider == "smsactivate"
    assert_no_secret(raised.value, fake)


async def test_bad_key_and_ban_from_server_state(fake: FakeSmsActivate, clock: FakeClock) -> None:
    wrong = make(fake, clock, api_key="not-the-key")
    try:
        with pytest.raises(BadKey):
            await wrong.balance()
    finally:
        await wrong.aclose()
    fake.banned_until = "2026-02-01 00:00:00"
    sa = make(fake, clock)
    try:
        with pytest.raises(Banned) as banned:
            await sa.catalogue()
        assert "2026-02-01" in str(banned.value)
    finally:
        await sa.aclose()


async def test_bad_action_is_not_supported(sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    fake.script("getBalance", body="BAD_ACTION")
    with pytest.raises(NotSupported):
        await sa.balance()


# ---------------------------------------------------------------- malformed replies

HTML = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.mark.parametrize(
    "body", [HTML, "", "ACCESS_BALANCE", "ACCESS_BALANCE:abc", "SOMETHING_NEW", "ACCESS_NUMBER:1:79990000000"]
)
async def test_malformed_balance_replies(body: str, sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    fake.script("getBalance", body=body, content_type="text/html")
    with pytest.raises(MalformedResponse) as raised:
        await sa.balance()
    assert not isinstance(raised.value, OutcomeUnknown)


@pytest.mark.parametrize("body", ["STATUS_OK", "STATUS_OK:", "STATUS_WAIT_CODE:x", "OK", HTML, "STATUS_FOO"])
async def test_malformed_status_replies(body: str, sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    fake.script("getStatus", body=body)
    with pytest.raises(MalformedResponse):
        await sa.status("1")


@pytest.mark.parametrize(
    "body",
    [
        '{"0": {"wa": {"cost": 1',
        "[1, 2",
        HTML,
        '{"0": [1]}',
        '{"0": {"wa": {"count": 5}}}',
        '{"0": {"wa": {"cost": "x"}}}',
        "null",
    ],
)
async def test_malformed_prices(body: str, sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    fake.script("getPrices", body=body, content_type="application/json")
    with pytest.raises(MalformedResponse):
        await sa.catalogue()


@pytest.mark.parametrize(
    "body",
    [
        '{"activationId": 1, "phoneNumber": "7999',
        HTML,
        '{"phoneNumber": "79990000000", "activationCost": 1}',
        '{"activationId": 1, "phoneNumber": "call me", "activationCost": 1}',
        "ACCESS_NUMBER:1:79990000000",
        "WHATEVER",
    ],
)
async def test_malformed_rent_reply_is_outcome_unknown(
    body: str, sa: SmsActivateProvider, fake: FakeSmsActivate
) -> None:
    fake.script("getNumberV2", body=body, content_type="application/json")
    with pytest.raises(OutcomeUnknown) as raised:
        await sa.rent(req())
    # malformed *and* possibly applied: never a definite failure that invites failover
    assert isinstance(raised.value, MalformedResponse)


async def test_malformed_getnumber_reply(fake: FakeSmsActivate, clock: FakeClock) -> None:
    fake.v2 = False
    sa = make(fake, clock)
    try:
        fake.script("getNumber", body="ACCESS_NUMBER:12345")
        with pytest.raises(OutcomeUnknown):
            await sa.rent(req())
    finally:
        await sa.aclose()


@pytest.mark.parametrize("body", ["ACCESS_READY", "ACCESS_ACTIVATION", "", HTML])
async def test_wrong_setstatus_acknowledgement_is_malformed(
    body: str, sa: SmsActivateProvider, fake: FakeSmsActivate
) -> None:
    fake.script("setStatus", body=body)
    with pytest.raises(MalformedResponse):
        await sa.cancel("1")


@pytest.mark.parametrize(
    "body",
    [
        '{"status": "success", "activeActivations": {"a": 1}}',
        '[{"phoneNumber": "1"}]',
        '{"activeActivations": [',
        HTML,
        '{"status": "error", "error": "SOMETHING"}',
    ],
)
async def test_malformed_active_activations(
    body: str, sa: SmsActivateProvider, fake: FakeSmsActivate
) -> None:
    fake.script("getActiveActivations", body=body, content_type="application/json")
    with pytest.raises(MalformedResponse):
        await sa.batch_status(["1"])


# ---------------------------------------------------------------- transport failures


async def test_slow_read_times_out(sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    fake.script("getBalance", delay=2.0, body="ACCESS_BALANCE:1.00")
    with pytest.raises(ProviderTimeout) as raised:
        await sa.balance()
    assert not isinstance(raised.value, OutcomeUnknown)


async def test_timeout_on_rent_is_outcome_unknown_and_recoverable(
    sa: SmsActivateProvider, fake: FakeSmsActivate
) -> None:
    fake.script("getNumberV2", apply=True, delay=2.0)  # rented upstream, reply lost
    with pytest.raises(OutcomeUnknown):
        await sa.rent(req())
    # recovery: the activation is found among the active ones
    active = await sa.active_activations()
    assert [r.activation_id for r in active] == list(fake.activations)


async def test_reset_after_rent_is_outcome_unknown(sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    fake.script("getNumberV2", apply=True, reset=True)
    with pytest.raises(OutcomeUnknown):
        await sa.rent(req())
    assert len(fake.activations) == 1


async def test_reset_on_read_is_unavailable(sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    fake.script("getStatus", reset=True)
    with pytest.raises(ProviderUnavailable) as raised:
        await sa.status("1")
    assert not isinstance(raised.value, OutcomeUnknown)


async def test_connection_refused_before_sending_is_not_outcome_unknown(
    fake: FakeSmsActivate, clock: FakeClock
) -> None:
    sa = make(fake, clock)
    await fake.stop()
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            await sa.rent(req())
        assert not isinstance(raised.value, OutcomeUnknown)
        assert_no_secret(raised.value, fake)
    finally:
        await sa.aclose()


async def test_rate_limited_honours_retry_after(
    sa: SmsActivateProvider, fake: FakeSmsActivate, clock: FakeClock
) -> None:
    fake.script("getBalance", status=429, headers={"Retry-After": "7"}, body="slow down")
    with pytest.raises(RateLimited) as raised:
        await sa.balance()
    assert raised.value.retry_after == 7
    when = format_datetime(clock.now() + timedelta(seconds=30), usegmt=True)
    fake.script("getBalance", status=429, headers={"Retry-After": when}, body="")
    with pytest.raises(RateLimited) as raised:
        await sa.balance()
    assert raised.value.retry_after == 30


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(status: int, sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    fake.script("getStatus", status=status, body=HTML)
    with pytest.raises(ProviderUnavailable) as raised:
        await sa.status("1")
    assert not isinstance(raised.value, OutcomeUnknown)
    fake.script("getNumberV2", status=status, body=HTML)
    with pytest.raises(OutcomeUnknown):
        await sa.rent(req())


async def test_reservation_changes_are_serialized(sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    fake.script("getNumberV2", apply=True, delay=0.1, times=3)
    rentals = await asyncio.gather(*(sa.rent(req(key=f"o{i}")) for i in range(3)))
    assert len({r.activation_id for r in rentals}) == 3
    assert fake.max_in_flight["getNumberV2"] == 1


async def test_reads_are_not_serialized(sa: SmsActivateProvider, fake: FakeSmsActivate) -> None:
    fake.script("getBalance", delay=0.1, times=3, body="ACCESS_BALANCE:1.00")
    await asyncio.gather(*(sa.balance() for _ in range(3)))
    assert fake.max_in_flight["getBalance"] > 1


# ---------------------------------------------------------------- secrets


async def test_api_key_never_logged(
    sa: SmsActivateProvider, fake: FakeSmsActivate, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await sa.balance()
    await sa.catalogue()
    fake.script("getStatus", status=500, body=f"oops {fake.api_key}")
    with pytest.raises(ProviderUnavailable) as raised:
        await sa.status("1")
    assert_no_secret(raised.value, fake)
    assert any("getBalance" in r.getMessage() for r in caplog.records)  # requests are logged
    for record in caplog.records:
        if record.name.startswith("aiohttp"):
            continue  # the fake upstream's own access log, not ours
        assert fake.api_key not in record.getMessage()


# ---------------------------------------------------------------- settings


async def test_legacy_smsactivate_settings_build_a_handlerapi_instance(
    fake: FakeSmsActivate, clock: FakeClock
) -> None:
    settings = load_settings(
        _env_file=None,
        PROVIDERS="smsactivate",
        SMSACTIVATE_URL=fake.base_url + PATH,
        SMSACTIVATE_API_KEY=fake.api_key,
        SMSACTIVATE_CURRENCY="RUB",
        SMSACTIVATE_COST_RATE=0.01,
        SMSACTIVATE_ORDER_TTL_SECONDS=900,
        SHOP_CURRENCY="USD",
    )
    sa = build_provider("smsactivate", settings, clock)
    assert isinstance(sa, HandlerApiProvider) and sa.name == "smsactivate"
    try:
        rental = await sa.rent(req())
        assert rental.cost == 16
        assert rental.expires_at == clock.now() + timedelta(seconds=900)
        assert (await sa.balance()).currency == "RUB"
    finally:
        await sa.aclose()
    # SMS-Activate closed: the instance needs its URL (no default points at a closed service)
    with pytest.raises(ConfigError, match="^SMSACTIVATE_URL, SMSACTIVATE_API_KEY: required"):
        load_settings(_env_file=None, PROVIDERS="smsactivate")


# ---------------------------------------------------------------- circuit breaker over HTTP


async def test_breaker_opens_fails_fast_and_closes_after_ttl(
    sa: SmsActivateProvider, fake: FakeSmsActivate, clock: FakeClock
) -> None:
    from core.providers.breaker import BreakerBoard
    from core.providers.errors import BreakerOpen

    board = BreakerBoard(threshold=3, ttl_s=30, clock=clock)
    guarded = board.guard(sa)
    # business refusals are healthy answers: they never open the breaker
    for _ in range(5):
        with pytest.raises(OutOfStock):
            await guarded.rent(req(service="whatsapp", country="GB"))
    assert board.states()["smsactivate"].failure_count == 0
    fake.script("getBalance", status=502, body=HTML, times=3)
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            await guarded.balance()
    info = board.states()["smsactivate"]
    assert info.state == "opened" and info.failure_count == 3
    assert "getBalance" in (info.last_error or "") and fake.api_key not in (info.last_error or "")
    seen = len(fake.calls)
    with pytest.raises(BreakerOpen):  # fails fast: the provider is not called
        await guarded.status("1")
    assert len(fake.calls) == seen
    clock.advance(29)
    with pytest.raises(BreakerOpen):
        await guarded.balance()
    assert len(fake.calls) == seen
    clock.advance(2)  # past the TTL: the next call is the probe, and it succeeds
    assert (await guarded.balance()).amount == 10000
    assert board.states()["smsactivate"].state == "closed"
    assert len(fake.calls) == seen + 1


async def test_breaker_counts_timeouts_and_reopens_on_a_failed_probe(
    sa: SmsActivateProvider, fake: FakeSmsActivate, clock: FakeClock
) -> None:
    from core.providers.breaker import BreakerBoard
    from core.providers.errors import BreakerOpen

    board = BreakerBoard(threshold=2, ttl_s=10, clock=clock)
    guarded = board.guard(sa)
    fake.script("getStatus", delay=2.0, body="STATUS_WAIT_CODE", times=2)
    for _ in range(2):
        with pytest.raises(ProviderTimeout):
            await guarded.status("1")
    assert board.states()["smsactivate"].state == "opened"
    clock.advance(11)
    fake.script("getStatus", body=HTML)
    with pytest.raises(MalformedResponse):  # the probe fails: open again at once
        await guarded.status("1")
    with pytest.raises(BreakerOpen):
        await guarded.status("1")


# ---------------------------------------------------------------- cost conversion


@given(
    max_cost=st.integers(min_value=0, max_value=10**7),
    rate=st.decimals(min_value="0.0001", max_value="1000", places=4),
    currency=st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_max_price_sent_upstream_never_lets_cost_exceed_the_users_price(
    max_cost: int, rate: object, currency: str
) -> None:
    conv = CostRate(str(rate), currency)
    provider_max = conv.to_provider_max(max_cost)
    assert provider_max >= 0
    assert conv.to_shop_minor(provider_max) <= max_cost


# ---------------------------------------------------------------- presets: each provider's dialect
#
# The fake speaks each provider's documented differences (``dialect=``, written from the
# reference); the adapter gets only the preset's name, as an operator would configure it.


@pytest.fixture
async def dialect_fake(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[FakeSmsActivate]:
    server = FakeSmsActivate(clock, dialect=request.param)
    server.prices[187] = {"tg": {"cost": "0.50", "count": 250}}
    await server.start()
    yield server
    await server.stop()


def preset_provider(fake: FakeSmsActivate, clock: FakeClock, **kw: object) -> HandlerApiProvider:
    opts: dict[str, object] = dict(
        cost_rate=1, provider_currency="USD", preset=fake.dialect, name=fake.dialect
    )
    opts.update(kw)
    return make(fake, clock, **opts)


@pytest.mark.parametrize("dialect_fake", ["grizzlysms"], indirect=True)
async def test_grizzlysms_sentences_region_block_and_explicit_country(
    dialect_fake: FakeSmsActivate, clock: FakeClock
) -> None:
    from core.providers.errors import AccountError

    fake = dialect_fake
    gz = preset_provider(fake, clock)
    try:
        # the fake defaults to Russia without a country: the adapter always names it
        rental = await gz.rent(req(service="telegram", country="US", max_cost=60))
        assert fake.activations[rental.activation_id].country == 187
        assert fake.calls_to("getNumberV2")[0].query["country"] == "187"
        fake.prohibited.add("tg")
        with pytest.raises(BadService) as refused:  # a plain sentence, not a keyword
            await gz.rent(req(service="telegram", country="US", max_cost=60, key="o-2"))
        assert "prohibited" in str(refused.value)
        fake.region_blocked = True
        with pytest.raises(AccountError):  # our IP's region is blocked: staff must act
            await gz.balance()
    finally:
        await gz.aclose()


@pytest.mark.parametrize("dialect_fake", ["smsbower"], indirect=True)
async def test_smsbower_wait_resend_and_early_cancel(dialect_fake: FakeSmsActivate, clock: FakeClock) -> None:
    fake = dialect_fake
    sb = preset_provider(fake, clock)
    try:
        rental = await sb.rent(req(service="telegram", country="US", max_cost=60))
        fake.activations[rental.activation_id].state = "resend"
        assert (await sb.status(rental.activation_id)).state is ActivationState.WAITING
        fake.activations[rental.activation_id].state = "wait"
        with pytest.raises(EarlyCancelDenied) as denied:
            await sb.cancel(rental.activation_id)
        assert denied.value.retry_at == clock.now() + timedelta(seconds=120)
    finally:
        await sb.aclose()


@pytest.mark.parametrize("dialect_fake", ["herosms"], indirect=True)
async def test_herosms_early_cancel_on_http_400_and_its_keywords(
    dialect_fake: FakeSmsActivate, clock: FakeClock
) -> None:
    fake = dialect_fake
    hero = preset_provider(fake, clock)
    try:
        rental = await hero.rent(req(service="telegram", country="US", max_cost=60))
        with pytest.raises(EarlyCancelDenied) as denied:  # HTTP 400, still a refusal
            await hero.cancel(rental.activation_id)
        assert denied.value.retry_at == clock.now() + timedelta(seconds=120)
        clock.advance(121)
        await hero.cancel(rental.activation_id)
        assert fake.activations[rental.activation_id].state == "cancel"
        with pytest.raises(BadService):  # WRONG_COUNTRY: Hero-SMS does not sell it
            await hero.rent(req(service="telegram", country="FR", max_cost=60, key="o-2"))
        fake.script("getBalance", body="NO_KEY")
        with pytest.raises(BadKey):
            await hero.balance()
    finally:
        await hero.aclose()


@pytest.mark.parametrize("dialect_fake", ["daisysms"], indirect=True)
async def test_daisysms_max_price_param_and_its_error_keywords(
    dialect_fake: FakeSmsActivate, clock: FakeClock
) -> None:
    fake = dialect_fake
    daisy = preset_provider(fake, clock)
    try:
        rental = await daisy.rent(req(service="telegram", country="US", max_cost=60))
        call = fake.calls_to("getNumber")[-1]
        assert call.query["max_price"] == "0.6" and "maxPrice" not in call.query
        assert rental.cost == 50
        with pytest.raises(PriceTooHigh):  # MAX_PRICE_EXCEEDED
            await daisy.rent(req(service="telegram", country="US", max_cost=40, key="o-2"))
        fake.balance = fake.balance.__class__("0.10")
        with pytest.raises(InsufficientProviderBalance):  # NO_MONEY
            await daisy.rent(req(service="telegram", country="US", max_cost=60, key="o-3"))
        offers = {(o.service, o.country): o.stock for o in await daisy.catalogue()}
        assert offers[("telegram", "US")] == 100  # "100 or more"
    finally:
        await daisy.aclose()


@pytest.mark.parametrize("dialect_fake", ["daisysms"], indirect=True)
async def test_daisysms_refused_cancel_answered_access_ready_is_never_success(
    dialect_fake: FakeSmsActivate, clock: FakeClock
) -> None:
    fake = dialect_fake
    daisy = preset_provider(fake, clock)
    try:
        waiting = await daisy.rent(req(service="telegram", country="US", max_cost=60))
        await daisy.cancel(waiting.activation_id)  # ACCESS_CANCEL
        assert fake.activations[waiting.activation_id].state == "cancel"
        with pytest.raises(AlreadyClosed):  # ACCESS_READY, and getStatus says cancelled
            await daisy.cancel(waiting.activation_id)
        coded = await daisy.rent(req(service="telegram", country="US", max_cost=60, key="o-2"))
        fake.deliver(coded.activation_id, "4321")
        with pytest.raises(BusinessError) as refused:  # a code came: billed, not cancelled
            await daisy.cancel(coded.activation_id)
        assert not isinstance(refused.value, AlreadyClosed | EarlyCancelDenied)
        assert fake.activations[coded.activation_id].state == "wait"
        with pytest.raises(ActivationNotFound):
            await daisy.cancel("999999")
    finally:
        await daisy.aclose()


async def test_plain_dialect_treats_access_ready_on_cancel_as_malformed(
    sa: SmsActivateProvider, fake: FakeSmsActivate
) -> None:
    rental = await sa.rent(req())
    fake.script("setStatus", body="ACCESS_READY")
    with pytest.raises(MalformedResponse):
        await sa.cancel(rental.activation_id)


@pytest.mark.parametrize("dialect_fake", ["smshub"], indirect=True)
async def test_smshub_sends_its_currency_and_both_price_caps(
    dialect_fake: FakeSmsActivate, clock: FakeClock
) -> None:
    fake = dialect_fake
    fake.balance = fake.balance.__class__("1000.00")  # RUB; the fake answers in USD on 840
    hub = preset_provider(fake, clock)
    try:
        assert (await hub.balance()).amount == 1100  # 1000 RUB × 0.011 = 11.00 USD
        await hub.catalogue()
        rental = await hub.rent(req(service="telegram", country="US", max_cost=60))
        for action in ("getBalance", "getPrices", "getNumberV2"):
            assert all(c.query["currency"] == "840" for c in fake.calls_to(action)), action
        assert all("currency" not in c.query for c in fake.calls_to("getCountries"))
        call = fake.calls_to("getNumberV2")[-1]
        assert call.query["maxPrice"] == call.query["max_price"] == "0.6"
        assert rental.activation_id in fake.activations
        fake.script("getBalance", body="API_KEY_NOT_VALID")
        with pytest.raises(BadKey):
            await hub.balance()
    finally:
        await hub.aclose()


@pytest.mark.parametrize("dialect_fake", ["smshub"], indirect=True)
async def test_smshub_no_action_falls_back_to_getnumber(
    dialect_fake: FakeSmsActivate, clock: FakeClock
) -> None:
    fake = dialect_fake
    fake.v2 = False  # NO_ACTION, SMSHub's word for an action it does not know
    hub = preset_provider(fake, clock)
    try:
        rental = await hub.rent(req(service="telegram", country="US", max_cost=60))
        assert rental.activation_id in fake.activations
        assert fake.calls_to("getNumber")[-1].query["currency"] == "840"
    finally:
        await hub.aclose()


@pytest.mark.parametrize("dialect_fake", ["smshub"], indirect=True)
async def test_smshub_bad_currency_is_an_account_error(
    dialect_fake: FakeSmsActivate, clock: FakeClock
) -> None:
    from core.providers.errors import AccountError

    fake = dialect_fake
    hub = preset_provider(fake, clock)
    try:
        fake.script("getBalance", body="BAD_CURRENCY")
        with pytest.raises(AccountError):
            await hub.balance()
    finally:
        await hub.aclose()
