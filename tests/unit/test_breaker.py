import asyncio
import logging
import os
import time
import uuid
from datetime import timedelta

import pytest

from core.clock import FakeClock
from core.providers.base import Provider, RentRequest
from core.providers.breaker import BreakerBoard, GuardedProvider
from core.providers.errors import (
    BadKey,
    BreakerOpen,
    OutOfStock,
    ProviderUnavailable,
    TransientError,
)
from core.providers.simulator import SimulatorProvider

REDIS_ENV = "NUMBERSHOP_TEST_REDIS_URL"


def failing(clock: FakeClock, name: str = "simulator") -> SimulatorProvider:
    return SimulatorProvider(clock=clock, name=name, transient_error_rate=1.0)


async def fail_n(provider, n: int) -> None:
    for _ in range(n):
        with pytest.raises(TransientError):
            await provider.balance()


def upstream_calls(sim: SimulatorProvider) -> int:
    return len(sim.calls)


async def test_guarded_provider_is_a_provider_and_passes_answers_through(clock):
    board = BreakerBoard(clock=clock)
    sim = SimulatorProvider(clock=clock, code_delay_s=None)
    guarded = board.guard(sim)
    assert isinstance(guarded, Provider) and isinstance(guarded, GuardedProvider)
    assert board.guard(guarded) is guarded
    rental = await guarded.rent(RentRequest("whatsapp", "GB", 10_000, "o1"))
    guarded.deliver_code(rental.activation_id, code="111222")  # test controls pass through
    status = await guarded.status(rental.activation_id)
    assert status.messages[0].code == "111222"
    assert guarded.capabilities == sim.capabilities and guarded.name == "simulator"


async def test_opens_after_threshold_and_then_fails_fast_without_calling(clock):
    board = BreakerBoard(threshold=3, ttl_s=30, clock=clock)
    sim = failing(clock)
    guarded = board.guard(sim)
    await fail_n(guarded, 2)
    info = board.states()["simulator"]
    assert (info.state, info.failure_count) == ("closed", 2)
    assert board.is_available("simulator")

    await fail_n(guarded, 1)
    info = board.states()["simulator"]
    assert info.state == "opened" and info.failure_count == 3
    assert info.opened_at == clock.now()
    assert "ProviderUnavailable" in info.last_error and info.last_error.startswith("balance")
    assert not board.is_available("simulator")

    calls_before = upstream_calls(sim)
    with pytest.raises(BreakerOpen) as opened:
        await guarded.rent(RentRequest("whatsapp", "GB", 10_000, "o1"))
    assert opened.value.provider == "simulator"
    assert isinstance(opened.value, ProviderUnavailable)  # routing treats it as unavailable
    assert upstream_calls(sim) == calls_before  # failed fast: the provider was not called


async def test_business_errors_never_count(clock):
    board = BreakerBoard(threshold=2, clock=clock)
    sim = SimulatorProvider(clock=clock, out_of_stock=True)
    guarded = board.guard(sim)
    for i in range(10):
        with pytest.raises(OutOfStock):
            await guarded.rent(RentRequest("whatsapp", "GB", 10_000, f"o{i}"))
    info = board.states()["simulator"]
    assert (info.state, info.failure_count, info.last_error) == ("closed", 0, None)


async def test_account_errors_count(clock):
    board = BreakerBoard(threshold=2, clock=clock)

    class Broken(SimulatorProvider):
        async def balance(self):
            raise BadKey("bad key")

    guarded = board.guard(Broken(clock=clock))
    for _ in range(2):
        with pytest.raises(BadKey):
            await guarded.balance()
    assert board.states()["simulator"].state == "opened"


async def test_closes_after_ttl_on_a_successful_probe(clock):
    board = BreakerBoard(threshold=2, ttl_s=30, clock=clock)
    sim = failing(clock)
    guarded = board.guard(sim)
    await fail_n(guarded, 2)

    clock.advance(29)
    with pytest.raises(BreakerOpen):
        await guarded.balance()
    assert not board.is_available("simulator")

    clock.advance(2)
    assert board.is_available("simulator")  # the next call is the probe
    sim.set_faults(transient_error_rate=0.0)
    assert (await guarded.balance()).currency == "USD"
    info = board.states()["simulator"]
    assert (info.state, info.failure_count, info.opened_at) == ("closed", 0, None)


async def test_a_failed_probe_reopens_for_another_ttl(clock):
    board = BreakerBoard(threshold=2, ttl_s=30, clock=clock)
    guarded = board.guard(failing(clock))
    await fail_n(guarded, 2)
    clock.advance(31)
    await fail_n(guarded, 1)  # the probe reached the provider and failed
    info = board.states()["simulator"]
    assert info.state == "opened" and info.opened_at == clock.now()
    with pytest.raises(BreakerOpen):
        await guarded.balance()


async def test_a_success_resets_the_consecutive_count(clock):
    board = BreakerBoard(threshold=3, clock=clock)
    sim = failing(clock)
    guarded = board.guard(sim)
    await fail_n(guarded, 2)
    sim.set_faults(transient_error_rate=0.0)
    await guarded.balance()
    sim.set_faults(transient_error_rate=1.0)
    await fail_n(guarded, 2)
    assert board.states()["simulator"].state == "closed"


async def test_cancellation_is_neutral(clock):
    board = BreakerBoard(threshold=3, clock=clock)
    sim = failing(clock)
    guarded = board.guard(sim)
    await fail_n(guarded, 2)

    started = asyncio.Event()

    async def hang():
        started.set()
        await asyncio.Event().wait()

    sim.balance = hang  # type: ignore[method-assign]
    task = asyncio.create_task(guarded.balance())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert board.states()["simulator"].failure_count == 2  # neither counted nor reset

    del sim.balance
    await fail_n(guarded, 1)
    assert board.states()["simulator"].state == "opened"


async def test_breakers_are_per_provider(clock):
    board = BreakerBoard(threshold=1, clock=clock)
    bad = board.guard(failing(clock, name="a"))
    good = board.guard(SimulatorProvider(clock=clock, name="b"))
    await fail_n(bad, 1)
    assert (await good.balance()).amount > 0
    states = board.states()
    assert (states["a"].state, states["b"].state) == ("opened", "closed")
    assert not board.is_available("a") and board.is_available("b")
    assert board.is_available("never-seen")


async def test_state_changes_are_logged_on_one_line(clock, caplog):
    board = BreakerBoard(threshold=1, ttl_s=5, clock=clock)
    sim = failing(clock)
    guarded = board.guard(sim)
    with caplog.at_level(logging.WARNING, logger="core.providers.breaker"):
        await fail_n(guarded, 1)
        clock.advance(6)
        sim.set_faults(transient_error_rate=0.0)
        await guarded.balance()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("breaker simulator: closed -> opened; last error: balance:")
    assert "breaker simulator: opened -> half-opened" in lines
    assert "breaker simulator: half-opened -> closed" in lines
    assert all("\n" not in line for line in lines)


async def test_the_fake_clock_does_not_leak_into_purgatory_elsewhere(clock):
    clock.advance(days=-3650)
    board = BreakerBoard(threshold=1, clock=clock)
    await fail_n(board.guard(failing(clock)), 1)
    assert board.states()["simulator"].opened_at == clock.now()
    other_clock = FakeClock(clock.now() + timedelta(days=1))
    other = BreakerBoard(threshold=1, clock=other_clock)
    await fail_n(other.guard(failing(other_clock)), 1)
    assert other.states()["simulator"].opened_at == other_clock.now()
    assert board.states()["simulator"].opened_at == clock.now()


async def test_purgatory_is_not_patched_for_its_other_users(clock):
    """Building and using a board leaves purgatory's module as it was: another user of
    purgatory in the process, even one called from inside a guarded call, gets stock
    behaviour (real time), whatever clock the board runs on."""
    import purgatory.domain.model as model
    from purgatory import AsyncCircuitBreakerFactory

    clock.advance(days=-3650)
    board = BreakerBoard(threshold=1, clock=clock)
    stranger = AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=30)

    async def strangers_breaker_opens() -> float:
        brk = await stranger.get_breaker("elsewhere")
        with pytest.raises(RuntimeError):
            async with brk:
                raise RuntimeError("down")
        return brk.context.opened_at

    opened_at = await board.call("simulator", "probe", strangers_breaker_opens)
    assert abs(opened_at - time.time()) < 60  # the real time, not the board's clock
    await fail_n(board.guard(failing(clock)), 1)
    assert board.states()["simulator"].opened_at == clock.now()
    assert model.time is time  # the module attribute is the real module, not a stand-in


async def test_unreadable_state_store_refuses_the_call_without_calling_the_provider(clock):
    board = BreakerBoard(redis_url="redis://127.0.0.1:1/0", clock=clock)
    sim = SimulatorProvider(clock=clock)
    with pytest.raises(ProviderUnavailable) as info:
        await board.guard(sim).balance()
    assert not isinstance(info.value, BreakerOpen)
    assert sim.calls == []


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        BreakerBoard(threshold=0)
    with pytest.raises(ValueError):
        BreakerBoard(ttl_s=0)


@pytest.fixture
async def redis_url():
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"Redis breaker test skipped: set {REDIS_ENV} to run it")
    yield url


async def test_redis_state_is_shared_between_boards(clock, redis_url):
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    first = BreakerBoard(threshold=2, ttl_s=30, redis_url=redis_url, clock=clock, namespace=namespace)
    second = BreakerBoard(threshold=2, ttl_s=30, redis_url=redis_url, clock=clock, namespace=namespace)
    try:
        await fail_n(first.guard(failing(clock)), 2)
        assert first.states()["simulator"].state == "opened"

        healthy = SimulatorProvider(clock=clock)
        with pytest.raises(BreakerOpen):
            await second.guard(healthy).balance()
        assert healthy.calls == []
        assert (await second.astates())["simulator"].state == "opened"

        clock.advance(31)
        assert (await second.guard(healthy).balance()).amount > 0
        assert (await first.astates())["simulator"].state == "closed"
    finally:
        from redis.asyncio import from_url

        client = from_url(redis_url)
        keys = [k async for k in client.scan_iter(f"cbr::{namespace}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await first.aclose()
        await second.aclose()


# --- registry: the configured providers, each behind the board ----------------------------


async def test_registry_builds_guarded_providers_in_priority_order(clock):
    from core.config import Settings
    from core.providers.registry import build_providers

    board = BreakerBoard(clock=clock)
    settings = Settings(_env_file=None, PROVIDERS="simulator", SIMULATOR_SEED=42)
    providers = build_providers(settings, clock, board)
    assert list(providers) == ["simulator"]
    sim = providers["simulator"]
    assert isinstance(sim, GuardedProvider) and sim.board is board
    assert sim.inner.seed == 42 and sim.inner.clock is clock

    both = Settings(
        _env_file=None,
        PROVIDERS="smsactivate,simulator",
        SMSACTIVATE_API_KEY="k",
        SMSACTIVATE_URL="http://127.0.0.1:9/stubs/handler_api.php",
    )
    built = build_providers(both, clock, BreakerBoard(clock=clock))
    assert list(built) == ["smsactivate", "simulator"]
    assert all(isinstance(p, GuardedProvider) for p in built.values())
    for provider in [*providers.values(), *built.values()]:
        await provider.aclose()


@pytest.mark.parametrize(
    ("providers", "missing"),
    [
        ("smsactivate", "SMSACTIVATE_URL, SMSACTIVATE_API_KEY"),
        ("simulator,textverified", "TEXTVERIFIED_API_USERNAME, TEXTVERIFIED_API_KEY"),
    ],
)
def test_registry_names_missing_credentials(clock, providers, missing):
    from core.config import ConfigError, Settings

    with pytest.raises(ConfigError) as info:  # settings refuse them before any provider is built
        Settings(
            _env_file=None,
            PROVIDERS=providers,
            SMSACTIVATE_API_KEY=None,
            TEXTVERIFIED_API_USERNAME=None,
            TEXTVERIFIED_API_KEY=None,
        )
    assert str(info.value).startswith(f"{missing}: required when PROVIDERS includes")
    assert "\n" not in str(info.value)
