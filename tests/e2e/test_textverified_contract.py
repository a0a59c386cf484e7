"""Contract: the textverified adapter against a fake TextVerified API v2 over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from core.clock import FakeClock
from core.config import ConfigError, load_settings
from core.providers.base import ActivationState, Provider, RentRequest
from core.providers.errors import (
    ActivationNotFound,
    AlreadyClosed,
    BadKey,
    BadService,
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
)
from core.providers.registry import build_provider
from core.providers.textverified import TextVerifiedProvider

from .fakes.textverified_server import API, FakeTextVerified


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeTextVerified]:
    server = FakeTextVerified(clock)
    await server.start()
    yield server
    await server.stop()


def make(fake: FakeTextVerified, clock: FakeClock, **kw: object) -> TextVerifiedProvider:
    opts: dict[str, object] = dict(
        url=fake.base_url,
        username=fake.username,
        api_key=fake.api_key,
        clock=clock,
        timeout=httpx.Timeout(0.5),
        conflict_retry_delays=(0.01, 0.01, 0.01),
    )
    opts.update(kw)
    return TextVerifiedProvider(**opts)  # type: ignore[arg-type]


@pytest.fixture
async def tv(fake: FakeTextVerified, clock: FakeClock) -> AsyncIterator[TextVerifiedProvider]:
    provider = make(fake, clock)
    yield provider
    await provider.aclose()


def req(
    service: str = "whatsapp", max_cost: int = 200, key: str = "order-1", country: str = "US"
) -> RentRequest:
    return RentRequest(service=service, country=country, max_cost=max_cost, idempotency_key=key)


def secrets_of(fake: FakeTextVerified) -> list[str]:
    return [fake.api_key, *fake.tokens]


def assert_no_secret(exc: BaseException, fake: FakeTextVerified) -> None:
    for secret in secrets_of(fake):
        assert secret not in str(exc)


# ---------------------------------------------------------------- auth


async def test_port_and_capabilities(tv: TextVerifiedProvider) -> None:
    assert isinstance(tv, Provider)
    assert tv.capabilities.idempotent_rent
    assert not tv.capabilities.another_code


async def test_token_is_cached_and_refreshed_shortly_before_expiry(
    tv: TextVerifiedProvider, fake: FakeTextVerified, clock: FakeClock
) -> None:
    for _ in range(3):
        await tv.balance()
    assert len(fake.calls_to("auth")) == 1
    auth = fake.calls_to("auth")[0]
    assert auth.headers["X-API-USERNAME"] == fake.username
    assert auth.headers["X-API-KEY"] == fake.api_key
    clock.advance(900 - 61)
    await tv.balance()
    assert len(fake.calls_to("auth")) == 1  # still comfortably valid
    clock.advance(2)  # within the refresh margin: a new token before the old one dies
    await tv.balance()
    assert len(fake.calls_to("auth")) == 2
    assert [c.route for c in fake.calls].count("account") == 5
    assert all(c.route == "auth" or c.headers["Authorization"].startswith("Bearer eyJh") for c in fake.calls)


async def test_401_refreshes_the_token_once_and_repeats(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    await tv.balance()
    fake.revoke_tokens()  # the token died early
    bal = await tv.balance()
    assert bal.amount == 2500
    assert len(fake.calls_to("auth")) == 2
    assert [c.route for c in fake.calls] == ["auth", "account", "account", "auth", "account"]


async def test_401_after_refresh_is_bad_key(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    fake.script("account", status=401, times=2)
    with pytest.raises(BadKey):
        await tv.balance()
    assert len(fake.calls_to("auth")) == 2
    assert len(fake.calls_to("account")) == 2


async def test_wrong_credentials(fake: FakeTextVerified, clock: FakeClock) -> None:
    tv = make(fake, clock, api_key="wrong-key-789")
    try:
        with pytest.raises(BadKey) as raised:
            await tv.balance()
        assert "wrong-key-789" not in str(raised.value)
    finally:
        await tv.aclose()


async def test_concurrent_callers_share_one_token_fetch(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    await asyncio.gather(*(tv.balance() for _ in range(5)))
    assert len(fake.calls_to("auth")) == 1


@pytest.mark.parametrize(
    "body",
    [
        '{"token": "eyJhabc"}',
        '{"token": "", "expiresIn": 900}',
        "<html>maintenance</html>",
        '{"token": "eyJh',
    ],
)
async def test_malformed_auth_reply(body: str, tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    fake.script("auth", body=body, content_type="application/json")
    with pytest.raises(MalformedResponse):
        await tv.balance()


# ---------------------------------------------------------------- catalogue & balance


async def test_balance(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    fake.balance = fake.balance.__class__("12.345")
    bal = await tv.balance()
    assert (bal.amount, bal.currency) == (1234, "USD")


async def test_catalogue_with_pricing_and_inventory(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    fake.unpriceable.add("discord")  # pricing answers 400 for this one
    offers = {(o.service, o.country): (o.cost, o.stock) for o in await tv.catalogue()}
    assert offers == {
        ("whatsapp", "US"): (125, 9000),  # inventory capped at 9000
        ("telegram", "US"): (90, 0),
        ("google", "US"): (75, 35),  # canonical 'google' is TextVerified's 'gmail'
    }
    services = fake.calls_to("services")[0]
    assert services.query == {"numberType": "mobile", "reservationType": "verification"}
    pricing = {c.body["serviceName"]: c.body for c in fake.calls_to("pricing")}
    assert pricing["gmail"] == {
        "serviceName": "gmail",
        "areaCode": False,
        "carrier": False,
        "numberType": "mobile",
        "capability": "sms",
    }
    inventory = {c.body["serviceName"]: c.body for c in fake.calls_to("inventory")}
    assert inventory["gmail"] == {"serviceName": "gmail", "numberType": "mobile", "capability": "sms"}
    assert "voiceonly" not in pricing and "someothersite" not in pricing


async def test_catalogue_waits_out_a_short_429(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    fake.script("inventory", status=429, headers={"Retry-After": "0"})
    offers = await tv.catalogue()
    assert len(offers) == 4


async def test_catalogue_long_429_propagates(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    fake.script("services", status=429, headers={"Retry-After": "120"})
    with pytest.raises(RateLimited) as raised:
        await tv.catalogue()
    assert raised.value.retry_after == 120


# ---------------------------------------------------------------- rent


async def test_rent_sends_key_and_max_price_and_follows_location(
    tv: TextVerifiedProvider, fake: FakeTextVerified, clock: FakeClock
) -> None:
    rental = await tv.rent(req(max_cost=199))
    [create] = fake.calls_to("create")
    assert create.headers["Idempotency-Key"] == "order-1"
    assert create.body == {"serviceName": "whatsapp", "capability": "sms", "maxPrice": 1.99}
    [details] = fake.calls_to("details")
    assert details.path == f"{API}/verifications/{rental.activation_id}"
    v = fake.verifications[rental.activation_id]
    assert rental.phone == v.number
    assert rental.cost == 125
    assert rental.expires_at == clock.now() + timedelta(seconds=900)
    assert rental.created_at == clock.now()
    assert (rental.service, rental.country) == ("whatsapp", "US")
    assert not rental.can_request_another


async def test_rent_uses_the_aliased_service_name(
    tv: TextVerifiedProvider, fake: FakeTextVerified, clock: FakeClock
) -> None:
    rental = await tv.rent(req(service="google"))  # no catalogue sync in this process yet
    assert fake.calls_to("create")[0].body["serviceName"] == "gmail"
    assert rental.service == "google"
    await tv.rent(req(service="whatsapp", key="order-2"))
    assert len(fake.calls_to("services")) == 1  # the service list is cached…
    clock.advance(3601)
    await tv.rent(req(service="whatsapp", key="order-3"))
    assert len(fake.calls_to("services")) == 2  # …for an hour


async def test_rent_of_a_service_textverified_does_not_list(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    with pytest.raises(BadService):
        await tv.rent(req(service="wechat"))
    assert fake.calls_to("create") == []


async def test_rent_outside_the_us_is_refused_without_a_call(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    with pytest.raises(BadService):
        await tv.rent(req(country="GB"))
    assert fake.calls == []


async def test_rent_errors_from_real_conditions(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    with pytest.raises(OutOfStock):
        await tv.rent(req(service="telegram"))
    with pytest.raises(PriceTooHigh):
        await tv.rent(req(max_cost=124, key="order-2"))
    assert fake.verifications == {}


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("InsufficientBalance", InsufficientProviderBalance),
        ("Unavailable", OutOfStock),
        ("PricingFailure", PriceTooHigh),
        ("TooManyUnfinishedVerifications", TooManyActive),
        ("SomethingElse", BusinessError),
    ],
)
async def test_create_error_codes(
    code: str, cls: type[ProviderError], tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    # an unrecognised refusal may be an expired purchase of this key: asked once more under
    # the replacement key, then definite
    fake.script(
        "create",
        status=400,
        content_type="application/json",
        times=2,
        body=json.dumps({"errorCode": code, "errorDescription": "no"}),
    )
    with pytest.raises(cls) as raised:
        await tv.rent(req())
    assert type(raised.value) is cls
    assert not isinstance(raised.value, OutcomeUnknown)
    assert len(fake.calls_to("create")) == (1 if cls is not BusinessError else 2)


async def test_idempotent_create_retried_after_a_timeout_returns_the_same_verification(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    fake.script("create", apply=True, delay=2.0)  # purchased upstream, reply lost
    rental = await tv.rent(req())
    assert list(fake.verifications) == [rental.activation_id]  # exactly one purchase
    keys = [c.headers["Idempotency-Key"] for c in fake.calls_to("create")]
    assert keys == ["order-1", "order-1"]


async def test_idempotent_create_after_a_reset(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    fake.script("create", apply=True, reset=True)
    rental = await tv.rent(req())
    assert list(fake.verifications) == [rental.activation_id]


async def test_409_conflict_is_retried_with_the_same_key(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    fake.purchase_rounds = 2  # the purchase is still running for two more requests
    fake.script("create", apply=True, delay=2.0)
    rental = await tv.rent(req())
    statuses = [c.route for c in fake.calls if c.route == "create"]
    assert len(statuses) == 4  # lost reply, 409, 409, 201
    assert list(fake.verifications) == [rental.activation_id]


async def test_conflict_that_outlasts_the_retries_is_outcome_unknown_then_recovers(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    fake.purchase_rounds = 10
    fake.script("create", apply=True, delay=2.0)
    with pytest.raises(OutcomeUnknown):
        await tv.rent(req())
    assert len(fake.calls_to("create")) == 5  # lost, then 409 × (1 + 3 bounded waits)
    fake.purchases["order-1"].rounds_left = 0  # the purchase finished upstream
    rental = await tv.rent(req())  # recovery: same key → same verification
    assert list(fake.verifications) == [rental.activation_id]


async def test_unanswered_retries_are_outcome_unknown_and_recovery_gets_the_same_one(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    fake.script("create", apply=True, delay=2.0, times=2)
    with pytest.raises(OutcomeUnknown):
        await tv.rent(req())
    rental = await tv.rent(req())
    assert list(fake.verifications) == [rental.activation_id]


async def test_a_definite_failure_after_an_unanswered_attempt_is_still_unknown(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    fake.script("create", apply=True, delay=2.0)
    fake.script("create", status=429, headers={"Retry-After": "5"})
    with pytest.raises(OutcomeUnknown):
        await tv.rent(req())


async def test_reading_the_created_verification_fails(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    fake.script("details", status=500, body="oops")
    with pytest.raises(OutcomeUnknown):
        await tv.rent(req())
    rental = await tv.rent(req())
    assert list(fake.verifications) == [rental.activation_id]


async def test_201_without_a_link_is_malformed_and_unknown(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    fake.script("create", status=201, body="")
    with pytest.raises(OutcomeUnknown) as raised:
        await tv.rent(req())
    assert isinstance(raised.value, MalformedResponse)


async def test_location_on_another_origin_stays_on_ours(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    first = await tv.rent(req())
    evil = f"http://evil.invalid:9/api/pub/v2/verifications/{first.activation_id}"
    fake.script("create", status=201, body="", headers={"Location": evil})
    again = await tv.rent(req(key="order-2"))
    assert again.activation_id == first.activation_id
    assert len(fake.calls_to("details")) == 2


async def test_connection_refused_before_create_is_definite(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    await tv.balance()  # token cached
    await fake.stop()
    with pytest.raises(ProviderUnavailable) as raised:
        await tv.rent(req())
    assert not isinstance(raised.value, OutcomeUnknown)


async def test_create_429_before_sending_anything_is_rate_limited(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    fake.script("create", status=429, headers={"Retry-After": "3"})
    with pytest.raises(RateLimited) as raised:
        await tv.rent(req())
    assert raised.value.retry_after == 3
    assert fake.verifications == {}


async def test_reservation_changes_are_serialized(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    await tv.balance()
    fake.script("create", apply=True, delay=0.1, times=3)
    rentals = await asyncio.gather(*(tv.rent(req(key=f"o{i}")) for i in range(3)))
    assert len({r.activation_id for r in rentals}) == 3
    assert fake.max_in_flight["create"] == 1


# ---------------------------------------------------------------- status & messages


async def test_status_and_paginated_messages(
    tv: TextVerifiedProvider, fake: FakeTextVerified, clock: FakeClock
) -> None:
    rental = await tv.rent(req())
    aid = rental.activation_id
    st = await tv.status(aid)
    assert st.state is ActivationState.WAITING and st.messages == ()
    for i in range(5):
        clock.advance(1)
        fake.deliver(aid, f"10000{i}")
    st = await tv.status(aid)
    assert st.state is ActivationState.FINISHED  # verificationCompleted: code in, closed
    assert [m.code for m in st.messages] == [f"10000{i}" for i in range(5)]
    assert len({m.message_id for m in st.messages}) == 5
    assert st.messages[0].text == "Your code is 100000"
    assert st.messages[0].received_at is not None
    pages = list(fake.calls_to("sms"))
    assert len(pages) == 1 + 3  # empty first read, then three pages of two
    again = await tv.status(aid)
    assert [m.message_id for m in again.messages] == [m.message_id for m in st.messages]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("verificationTimedOut", ActivationState.EXPIRED),
        ("verificationCanceled", ActivationState.CANCELLED),
        ("verificationRefunded", ActivationState.CANCELLED),
        ("verificationReported", ActivationState.CANCELLED),
        ("verificationReused", ActivationState.FINISHED),
    ],
)
async def test_closed_states(
    state: str, expected: ActivationState, tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    rental = await tv.rent(req())
    fake.verifications[rental.activation_id].state = state
    assert (await tv.status(rental.activation_id)).state is expected


async def test_unknown_state_is_malformed(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    rental = await tv.rent(req())
    fake.verifications[rental.activation_id].state = "verificationSomethingNew"
    with pytest.raises(MalformedResponse):
        await tv.status(rental.activation_id)


async def test_status_unknown_id(tv: TextVerifiedProvider) -> None:
    with pytest.raises(ActivationNotFound):
        await tv.status("ver_missing")


async def test_batch_status_and_active(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    a = await tv.rent(req(key="a"))
    b = await tv.rent(req(key="b"))
    c = await tv.rent(req(key="c"))
    fake.deliver(b.activation_id, "555")
    fake.verifications[c.activation_id].state = "verificationTimedOut"
    result = await tv.batch_status([a.activation_id, b.activation_id, "ver_nope"])
    assert set(result) == {a.activation_id, b.activation_id}
    assert result[b.activation_id].state is ActivationState.FINISHED
    active = await tv.active_activations()  # the list is paginated (two per page)
    assert [r.activation_id for r in active] == [a.activation_id]
    assert active[0].service == "whatsapp"


# ---------------------------------------------------------------- actions


async def test_cancel_denied_while_pending_then_allowed(fake: FakeTextVerified, clock: FakeClock) -> None:
    fake.cancel_after = timedelta(seconds=60)
    tv = make(fake, clock)
    try:
        rental = await tv.rent(req())
        with pytest.raises(EarlyCancelDenied) as denied:
            await tv.cancel(rental.activation_id)
        assert denied.value.retry_at == clock.now() + timedelta(seconds=60)
        clock.set(denied.value.retry_at)
        await tv.cancel(rental.activation_id)
        assert fake.verifications[rental.activation_id].state == "verificationCanceled"
        with pytest.raises(AlreadyClosed):
            await tv.cancel(rental.activation_id)
        with pytest.raises(ActivationNotFound):
            await tv.cancel("ver_missing")
    finally:
        await tv.aclose()


async def test_report_finish_and_another_code(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    rental = await tv.rent(req())
    fake.deliver(rental.activation_id, "42")
    await tv.finish(rental.activation_id)  # nothing to do upstream
    await tv.report(rental.activation_id)
    assert fake.verifications[rental.activation_id].state == "verificationReported"
    with pytest.raises(BusinessError):
        await tv.report(rental.activation_id)
    with pytest.raises(NotSupported):
        await tv.request_another_code(rental.activation_id)


# ---------------------------------------------------------------- malformed & transport


@pytest.mark.parametrize(
    "body",
    [
        "<html><body>Cloudflare</body></html>",
        '{"username": "x"',
        '{"username": "x", "currentBalance": "lots"}',
        '{"currentBalance": 5}',
        "[]",
    ],
)
async def test_malformed_account(body: str, tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    fake.script("account", body=body, content_type="application/json")
    with pytest.raises(MalformedResponse):
        await tv.balance()


@pytest.mark.parametrize(
    "body", ['{"id": "ver_1", "state": "verificationPend', '{"data": 5}', "<html></html>"]
)
async def test_malformed_reads(body: str, tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    rental = await tv.rent(req())
    fake.script("sms", body=body, content_type="application/json")
    with pytest.raises(MalformedResponse):
        await tv.status(rental.activation_id)
    fake.script("details", body=body, content_type="application/json")
    with pytest.raises(MalformedResponse):
        await tv.status(rental.activation_id)


async def test_slow_read_times_out(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    await tv.balance()
    fake.script("account", delay=2.0)
    with pytest.raises(ProviderTimeout):
        await tv.balance()


async def test_reset_on_read(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    await tv.balance()
    fake.script("account", reset=True)
    with pytest.raises(ProviderUnavailable) as raised:
        await tv.balance()
    assert not isinstance(raised.value, OutcomeUnknown)


async def test_secrets_never_logged_or_in_errors(
    tv: TextVerifiedProvider, fake: FakeTextVerified, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await tv.balance()
    token = next(iter(fake.tokens))
    fake.script("account", status=500, body=f"{token} {fake.api_key}")
    with pytest.raises(ProviderUnavailable) as raised:
        await tv.balance()
    assert_no_secret(raised.value, fake)
    for record in caplog.records:
        if record.name.startswith("aiohttp"):
            continue
        for secret in secrets_of(fake):
            assert secret not in record.getMessage()


async def test_instance_settings(fake: FakeTextVerified, clock: FakeClock) -> None:
    settings = load_settings(
        _env_file=None,
        PROVIDERS="textverified,tv2",
        TEXTVERIFIED_URL=fake.base_url,
        TEXTVERIFIED_API_USERNAME=fake.username,
        TEXTVERIFIED_API_KEY=fake.api_key,
        TV2_KIND="textverified",
        TV2_URL=fake.base_url,
        TV2_API_USERNAME=fake.username,
        TV2_API_KEY=fake.api_key,
    )
    first, second = (build_provider(n, settings, clock) for n in ("textverified", "tv2"))
    try:
        assert (first.name, second.name) == ("textverified", "tv2")
        assert (await first.balance()).amount == 2500
        assert (await second.balance()).amount == 2500
    finally:
        await first.aclose()
        await second.aclose()
    with pytest.raises(ConfigError, match="^TEXTVERIFIED_API_KEY: required"):
        load_settings(_env_file=None, PROVIDERS="textverified", TEXTVERIFIED_API_USERNAME="u")
    with pytest.raises(ConfigError, match="^TEXTVERIFIED_COST_RATE: required"):
        load_settings(
            _env_file=None,
            PROVIDERS="textverified",
            SHOP_CURRENCY="EUR",
            TEXTVERIFIED_API_USERNAME="u",
            TEXTVERIFIED_API_KEY="k",
        )


async def test_breaker_opens_on_account_errors_and_recovers(
    tv: TextVerifiedProvider, fake: FakeTextVerified, clock: FakeClock
) -> None:
    from core.providers.breaker import BreakerBoard
    from core.providers.errors import BreakerOpen

    board = BreakerBoard(threshold=2, ttl_s=60, clock=clock)
    guarded = board.guard(tv)
    real_key = fake.api_key
    fake.api_key = "rotated"  # our key was revoked upstream
    for _ in range(2):
        with pytest.raises(BadKey):
            await guarded.balance()
    assert board.states()["textverified"].state == "opened"
    calls = len(fake.calls)
    with pytest.raises(BreakerOpen):
        await guarded.rent(req())
    assert len(fake.calls) == calls
    fake.api_key = real_key  # staff fixed it
    clock.advance(61)
    assert (await guarded.balance()).amount == 2500
    assert board.states()["textverified"].state == "closed"


async def test_catalogue_gaps_name_the_services_no_canonical_service_maps(tv: TextVerifiedProvider) -> None:
    gaps = await tv.catalogue_gaps()
    # gmail maps (an alias of google); voice-only services are not sold at all
    assert gaps.services == ("someothersite",) and gaps.countries == ()


# ---------------------------------------------------------------- the published spec, item by item


async def test_account_without_or_with_negative_balance_is_no_fault(
    tv: TextVerifiedProvider, fake: FakeTextVerified, clock: FakeClock
) -> None:
    from core.providers.breaker import BreakerBoard

    board = BreakerBoard(threshold=1, ttl_s=60, clock=clock)
    guarded = board.guard(tv)
    fake.balance = None  # Account requires only username
    with pytest.raises(NotSupported):
        await guarded.balance()
    assert board.states()["textverified"].failure_count == 0
    fake.balance = Decimal("-1.50")  # credit owed is a real balance, not a malformed reply
    assert (await guarded.balance()).amount == -150
    assert board.states()["textverified"].state == "closed"


async def test_refusal_with_a_null_error_code_is_a_refusal(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    fake.script(
        "create",
        status=400,
        content_type="application/json",
        times=2,
        body='{"errorCode": null, "errorDescription": "Service temporarily disabled."}',
    )
    with pytest.raises(BusinessError) as refused:
        await tv.rent(req())
    assert not isinstance(refused.value, MalformedResponse)
    assert "temporarily disabled" in str(refused.value)


async def test_create_asks_for_json(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    await tv.rent(req())
    assert fake.calls_to("create")[0].headers.get("Accept") == "application/json"


async def test_400_after_a_retry_starts_over_with_a_new_key(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    # the first create lands but its reply is lost; by the retry that purchase has expired
    fake.expired_keys.add("order-1")
    fake.script("create", reset=True)
    rental = await tv.rent(req(key="order-1"))
    keys = [c.headers.get("Idempotency-Key") for c in fake.calls_to("create")]
    assert keys == ["order-1", "order-1", "order-1~new"]
    assert len(fake.verifications) == 1 and rental.activation_id in fake.verifications
    # recovery renting again with the order's key lands on the same purchase
    again = await tv.rent(req(key="order-1"))
    assert again.activation_id == rental.activation_id and len(fake.verifications) == 1


async def test_a_known_refusal_to_a_first_attempt_stays_definite(
    tv: TextVerifiedProvider, fake: FakeTextVerified
) -> None:
    with pytest.raises(OutOfStock):
        await tv.rent(req(service="telegram"))  # no stock: Unavailable
    assert len(fake.calls_to("create")) == 1 and fake.verifications == {}


async def test_a_refused_replacement_is_definite(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    fake.expired_keys.update({"order-1", "order-1~new"})
    with pytest.raises(BusinessError):
        await tv.rent(req(key="order-1"))
    assert len(fake.calls_to("create")) == 2 and fake.verifications == {}


async def test_cancel_honours_can_cancel_and_follows_the_link_as_given(
    fake: FakeTextVerified, clock: FakeClock
) -> None:
    fake.cancel_after = timedelta(seconds=60)
    fake.action_path = "/api/pub/v2/actions"  # the details' links point here, not the usual path
    tv = make(fake, clock)
    try:
        rental = await tv.rent(req())
        with pytest.raises(EarlyCancelDenied):  # canCancel is false: no POST is even tried
            await tv.cancel(rental.activation_id)
        assert fake.calls_to("cancel") == []
        clock.advance(61)
        await tv.cancel(rental.activation_id)
        (call,) = fake.calls_to("cancel")
        assert (call.method, call.path) == ("POST", f"/api/pub/v2/actions/{rental.activation_id}/cancel")
        assert fake.verifications[rental.activation_id].state == "verificationCanceled"
        with pytest.raises(AlreadyClosed):
            await tv.cancel(rental.activation_id)
    finally:
        await tv.aclose()


async def test_report_honours_can_report(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    fake.action_path = "/api/pub/v2/actions"
    rental = await tv.rent(req())
    await tv.report(rental.activation_id)
    assert fake.calls_to("report")[0].path.startswith("/api/pub/v2/actions/")
    with pytest.raises(BusinessError):  # reported already: canReport is false, nothing sent
        await tv.report(rental.activation_id)
    assert len(fake.calls_to("report")) == 1


async def test_encrypted_messages_are_never_shown(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    rental = await tv.rent(req())
    fake.deliver(rental.activation_id, "111222", encrypted=True)
    fake.deliver(rental.activation_id, "333444")
    status = await tv.status(rental.activation_id)
    assert [m.code for m in status.messages] == ["333444"]
    assert all("ciphertext" not in (m.text or "") for m in status.messages)


async def test_stock_cap_means_at_least(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    fake.stock["whatsapp"] = 25_000  # the API answers 9000, "9000 or more"
    offers = {o.service: o.stock for o in await tv.catalogue()}
    assert offers["whatsapp"] == 9000


async def test_completed_is_closed_everywhere(tv: TextVerifiedProvider, fake: FakeTextVerified) -> None:
    rental = await tv.rent(req())
    fake.deliver(rental.activation_id, "987654")  # verificationCompleted
    status = await tv.status(rental.activation_id)
    assert status.state is ActivationState.FINISHED and status.messages[0].code == "987654"
    assert await tv.active_activations() == []
    with pytest.raises(AlreadyClosed):
        await tv.cancel(rental.activation_id)


async def test_reuse_while_reusable_then_reactivate(
    tv: TextVerifiedProvider, fake: FakeTextVerified, clock: FakeClock
) -> None:
    fake.action_path = "/api/pub/v2/actions"
    first = await tv.rent(req())
    with pytest.raises(NotSupported):  # pending: reusableUntil is null, nothing is sent
        await tv.reuse(first.activation_id)
    with pytest.raises(NotSupported):  # canReactivate false
        await tv.reactivate(first.activation_id)
    assert fake.calls_to("reuse") == [] and fake.calls_to("reactivate") == []
    fake.deliver(first.activation_id, "111111")
    again = await tv.reuse(first.activation_id)
    assert again.activation_id != first.activation_id and again.phone == first.phone
    assert fake.calls_to("reuse")[0].path.startswith("/api/pub/v2/actions/")
    assert (await tv.status(first.activation_id)).state is ActivationState.FINISHED
    fake.deliver(again.activation_id, "222222")
    clock.advance(301)  # past the reuse window: reactivation instead
    with pytest.raises(NotSupported):
        await tv.reuse(again.activation_id)
    third = await tv.reactivate(again.activation_id)
    assert third.phone == first.phone and third.service == "whatsapp"
    assert fake.verifications[again.activation_id].state == "verificationReactivated"
