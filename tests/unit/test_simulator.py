import asyncio
from datetime import timedelta

import pytest

from core.clock import FakeClock
from core.providers.base import ActivationState, Provider, RentRequest
from core.providers.errors import (
    ActivationNotFound,
    AlreadyClosed,
    BadService,
    BusinessError,
    EarlyCancelDenied,
    NotSupported,
    OutcomeUnknown,
    OutOfStock,
    PriceTooHigh,
    ProviderUnavailable,
    TransientError,
)
from core.providers.simulator import SimulatorProvider

RICH = 10_000  # a max cost above anything the simulator charges


def req(key: str, service: str = "whatsapp", country: str = "GB", max_cost: int = RICH) -> RentRequest:
    return RentRequest(service=service, country=country, max_cost=max_cost, idempotency_key=key)


def sim(clock: FakeClock, **kw) -> SimulatorProvider:
    kw.setdefault("code_delay_s", (10, 30))
    return SimulatorProvider(clock=clock, **kw)


async def run_script(seed: int, clock: FakeClock, polls: int) -> list[tuple]:
    """A fixed call sequence; returns what a shop would observe."""
    p = sim(clock, seed=seed)
    seen = []
    for i in range(5):
        r = await p.rent(req(f"order-{i}", country=["GB", "US", "DE", "IN", "ID"][i]))
        seen.append((r.activation_id, r.phone, r.cost, r.expires_at))
    for _ in range(polls):
        clock.advance(1)
        await p.batch_status([a for a, *_ in seen])
    clock.advance(60)
    for aid, *_ in list(seen):
        st = await p.status(aid)
        seen.append((aid, st.state, tuple((m.code, m.received_at) for m in st.messages)))
    return seen


def test_it_is_a_provider():
    assert isinstance(SimulatorProvider(clock=FakeClock()), Provider)


async def test_same_seed_same_calls_same_clock_give_the_same_numbers_and_codes():
    a = await run_script(7, FakeClock(), polls=3)
    b = await run_script(7, FakeClock(), polls=3)
    assert a == b
    other = await run_script(8, FakeClock(), polls=3)
    assert [x[1] for x in other[:5]] != [x[1] for x in a[:5]]


async def test_polling_more_often_does_not_change_codes():
    few = await run_script(3, FakeClock(), polls=0)
    many = await run_script(3, FakeClock(), polls=25)
    assert few[5:] == many[5:]
    assert all(state == ActivationState.CODE for _, state, _ in few[5:])


async def test_catalogue_is_realistic_and_seeded():
    p1, p2 = SimulatorProvider(seed=1, clock=FakeClock()), SimulatorProvider(seed=1, clock=FakeClock())
    offers = await p1.catalogue()
    assert offers == await p2.catalogue()
    assert offers != await SimulatorProvider(seed=2, clock=FakeClock()).catalogue()
    stocked = [o for o in offers if o.stock > 0]
    assert len({o.service for o in stocked}) >= 20
    assert len({o.country for o in stocked}) >= 10
    assert all(isinstance(o.cost, int) and o.cost > 0 for o in offers)
    by_key = {(o.service, o.country): o for o in offers}
    assert by_key[("whatsapp", "US")].cost > by_key[("whatsapp", "ID")].cost  # price levels


async def test_rent_gives_a_number_with_deadline_from_ttl(clock):
    p = sim(clock, ttl_s=900)
    r = await p.rent(req("o1"))
    assert r.phone.startswith("+44")
    assert r.created_at == clock.now()
    assert r.expires_at == clock.now() + timedelta(seconds=900)
    assert (r.service, r.country) == ("whatsapp", "GB")
    assert r.cost == p.offers[("whatsapp", "GB")].cost
    assert p.calls[-1] == ("rent", "whatsapp", "GB", "o1")


async def test_rent_honours_max_cost(clock):
    p = sim(clock)
    cost = p.offers[("whatsapp", "GB")].cost
    with pytest.raises(PriceTooHigh) as info:
        await p.rent(req("o1", max_cost=cost - 1))
    assert info.value.min_price == cost
    assert p.activations == {}
    assert (await p.rent(req("o1", max_cost=cost))).cost == cost


async def test_same_idempotency_key_returns_the_same_rental(clock):
    p = sim(clock)
    first = await p.rent(req("o1"))
    clock.advance(5)
    again = await p.rent(req("o1"))
    assert again == first
    assert len(p.activations) == 1
    with pytest.raises(BusinessError):
        await p.rent(req("o1", country="US"))
    assert p.capabilities.idempotent_rent and p.capabilities.batch_status


async def test_unknown_service_or_country_is_a_business_error(clock):
    p = sim(clock)
    with pytest.raises(BadService):
        await p.rent(req("o1", service="nope"))
    with pytest.raises(BadService):
        await p.rent(req("o2", country="ZZ"))


async def test_latency_sleeps_only_when_positive(clock, monkeypatch):
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    p = sim(clock)
    first = await p.rent(req("o1"))
    await p.balance()
    assert slept == []
    p.set_faults(latency_s=0.25)
    await p.rent(req("o2"))
    await p.status(first.activation_id)
    assert slept == [0.25, 0.25]


async def test_transient_error_rate(clock):
    p = sim(clock, transient_error_rate=1.0)
    for call in (p.catalogue(), p.rent(req("o1")), p.balance(), p.active_activations()):
        with pytest.raises(ProviderUnavailable):
            await call
    assert p.activations == {}  # a transient failure never rents

    half = sim(clock, seed=5, transient_error_rate=0.5)
    outcomes = []
    for _ in range(200):
        try:
            await half.balance()
            outcomes.append(True)
        except TransientError:
            outcomes.append(False)
    assert 60 < outcomes.count(False) < 140

    again = sim(clock, seed=5, transient_error_rate=0.5)
    replay = []
    for _ in range(200):
        try:
            await again.balance()
            replay.append(True)
        except TransientError:
            replay.append(False)
    assert replay == outcomes


async def test_outcome_unknown_rents_upstream_and_retry_recovers_it(clock):
    p = sim(clock, outcome_unknown_rate=1.0)
    with pytest.raises(OutcomeUnknown):
        await p.rent(req("o1"))
    assert len(p.activations) == 1
    active = await p.active_activations()
    assert [r.activation_id for r in active] == list(p.activations)
    p.set_faults(outcome_unknown_rate=0.0)
    recovered = await p.rent(req("o1"))
    assert recovered == active[0]
    assert len(p.activations) == 1


async def test_out_of_stock_everywhere_or_for_chosen_pairs(clock):
    p = sim(clock, out_of_stock=True)
    with pytest.raises(OutOfStock):
        await p.rent(req("o1"))
    assert all(o.stock == 0 for o in await p.catalogue())

    p.set_faults(out_of_stock={("whatsapp", "GB")})
    with pytest.raises(OutOfStock):
        await p.rent(req("o2"))
    assert (await p.rent(req("o3", country="US"))).country == "US"
    stock = {(o.service, o.country): o.stock for o in await p.catalogue()}
    assert stock[("whatsapp", "GB")] == 0 and stock[("whatsapp", "US")] > 0

    p.set_faults(out_of_stock=False)
    p.set_offer("telegram", "DE", stock=0)
    with pytest.raises(OutOfStock):
        await p.rent(req("o4", service="telegram", country="DE"))


async def test_early_cancel_window_denies_then_allows(clock):
    p = sim(clock, early_cancel_window_s=120, code_delay_s=None)
    before = (await p.balance()).amount
    r = await p.rent(req("o1"))
    clock.advance(30)
    with pytest.raises(EarlyCancelDenied) as info:
        await p.cancel(r.activation_id)
    assert info.value.retry_at == r.created_at + timedelta(seconds=120)
    assert p.activations[r.activation_id].is_open
    clock.set(info.value.retry_at)
    await p.cancel(r.activation_id)
    assert (await p.status(r.activation_id)).state == ActivationState.CANCELLED
    assert (await p.balance()).amount == before  # the held cost came back
    with pytest.raises(AlreadyClosed):
        await p.cancel(r.activation_id)


async def test_code_arrives_inside_the_delay_range(clock):
    p = sim(clock, code_delay_s=(20, 40))
    r = await p.rent(req("o1"))
    clock.advance(19.9)
    assert (await p.status(r.activation_id)).state == ActivationState.WAITING
    clock.advance(20.2)
    st = await p.status(r.activation_id)
    assert st.state == ActivationState.CODE
    (msg,) = st.messages
    assert msg.code and len(msg.code) == 6 and msg.code in msg.text
    assert r.created_at + timedelta(seconds=20) <= msg.received_at <= r.created_at + timedelta(seconds=40)


async def test_code_never_arrives_and_the_activation_expires_unbilled(clock):
    p = sim(clock, code_delay_s=None, ttl_s=600)
    before = (await p.balance()).amount
    r = await p.rent(req("o1"))
    assert (await p.balance()).amount == before - r.cost
    clock.advance(599)
    assert (await p.status(r.activation_id)).state == ActivationState.WAITING
    clock.advance(1)
    st = await p.status(r.activation_id)
    assert st.state == ActivationState.EXPIRED and st.messages == ()
    assert await p.active_activations() == []
    assert (await p.balance()).amount == before


async def test_a_code_due_after_the_deadline_never_arrives(clock):
    p = sim(clock, code_delay_s=(100, 100), ttl_s=50)
    r = await p.rent(req("o1"))
    clock.advance(500)
    st = await p.status(r.activation_id)
    assert st.state == ActivationState.EXPIRED and st.messages == ()


async def test_deliver_code_is_immediate_and_cancel_after_code_finishes(clock):
    p = sim(clock, code_delay_s=None)
    r = await p.rent(req("o1"))
    msg = p.deliver_code(r.activation_id, code="123456")
    assert msg.received_at == clock.now()
    st = await p.status(r.activation_id)
    assert st.state == ActivationState.CODE and st.messages[0].code == "123456"
    with pytest.raises(AlreadyClosed):
        await p.cancel(r.activation_id)
    assert (await p.status(r.activation_id)).state == ActivationState.FINISHED
    with pytest.raises(AlreadyClosed):
        p.deliver_code(r.activation_id)


async def test_finish_closes_and_a_second_finish_is_already_closed(clock):
    p = sim(clock, code_delay_s=None)
    r = await p.rent(req("o1"))
    p.deliver_code(r.activation_id, text="code 4242", code="4242")
    await p.finish(r.activation_id)
    assert (await p.status(r.activation_id)).state == ActivationState.FINISHED
    assert await p.active_activations() == []
    with pytest.raises(AlreadyClosed):
        await p.finish(r.activation_id)


async def test_another_code_arrives_later(clock):
    p = sim(clock, code_delay_s=(10, 10))
    r = await p.rent(req("o1"))
    clock.advance(10)
    assert len((await p.status(r.activation_id)).messages) == 1
    await p.request_another_code(r.activation_id)
    clock.advance(9)
    assert len((await p.status(r.activation_id)).messages) == 1
    clock.advance(1)
    first, second = (await p.status(r.activation_id)).messages
    assert first.message_id != second.message_id
    assert second.received_at == r.created_at + timedelta(seconds=20)

    no_more = sim(clock, another_code=False)
    r2 = await no_more.rent(req("o2"))
    assert r2.can_request_another is False
    with pytest.raises(NotSupported):
        await no_more.request_another_code(r2.activation_id)


async def test_batch_status_and_active_activations(clock):
    p = sim(clock, code_delay_s=None)
    a = await p.rent(req("o1"))
    b = await p.rent(req("o2", country="US"))
    await p.cancel(b.activation_id)
    got = await p.batch_status([a.activation_id, b.activation_id, "999"])
    assert set(got) == {a.activation_id, b.activation_id}
    assert got[b.activation_id].state == ActivationState.CANCELLED
    assert [r.activation_id for r in await p.active_activations()] == [a.activation_id]
    with pytest.raises(ActivationNotFound):
        await p.status("999")


def test_bad_knobs_are_refused():
    p = SimulatorProvider(clock=FakeClock())
    with pytest.raises(ValueError):
        p.set_faults(transient_error_rate=1.5)
    with pytest.raises(ValueError):
        p.set_faults(code_delay_s=(30, 10))
    with pytest.raises(ValueError):
        p.set_faults(ttl_s=0)


async def test_long_runs_forget_old_closed_activations_and_old_calls(clock, monkeypatch):
    import core.providers.simulator as simulator_module

    monkeypatch.setattr(simulator_module, "MAX_CALLS_KEPT", 10)
    p = sim(clock, code_delay_s=None)
    old = await p.rent(req("old"))
    still_open = await p.rent(req("open", country="US"))
    await p.cancel(old.activation_id)
    clock.advance(days=1, seconds=1)
    for i in range(simulator_module._PRUNE_EVERY - 2):
        await p.rent(req(f"k{i}", country="DE"))
    assert old.activation_id not in p.activations
    assert still_open.activation_id in p.activations  # open ones are never forgotten
    assert len(p.calls) <= 10 and p.calls[-1][0] == "rent"


async def test_a_restarted_simulator_never_reuses_activation_ids():
    from datetime import UTC, datetime

    from core.clock import FakeClock
    from core.providers.base import RentRequest
    from core.providers.simulator import SimulatorProvider

    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    first = SimulatorProvider(seed=1, clock=clock)
    a = await first.rent(RentRequest("whatsapp", "GB", max_cost=10**6, idempotency_key="a"))
    clock.advance(5)
    second = SimulatorProvider(seed=1, clock=clock)  # the shop restarted
    b = await second.rent(RentRequest("whatsapp", "GB", max_cost=10**6, idempotency_key="b"))
    assert a.activation_id != b.activation_id
