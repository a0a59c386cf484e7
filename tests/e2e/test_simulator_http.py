"""The simulator over HTTP: protocol replies, the control API, and the smsactivate adapter
running end to end against it over loopback."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from core.clock import FakeClock
from core.providers.base import ActivationState, RentRequest
from core.providers.errors import (
    AlreadyClosed,
    BadKey,
    BadService,
    EarlyCancelDenied,
    OutcomeUnknown,
    OutOfStock,
    PriceTooHigh,
    ProviderUnavailable,
)
from core.providers.simulator import SimulatorProvider
from core.providers.simulator_http import RunningSimulator, start_server
from core.providers.smsactivate import SmsActivateProvider

KEY = "sandbox-test-key"


@pytest.fixture
def sim(clock: FakeClock) -> SimulatorProvider:
    return SimulatorProvider(seed=7, clock=clock, code_delay_s=None)


@pytest.fixture
async def server(sim: SimulatorProvider) -> AsyncIterator[RunningSimulator]:
    running = await start_server(sim, api_key=KEY, port=0)
    yield running
    await running.stop()


@pytest.fixture
async def http(server: RunningSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        yield client


@pytest.fixture
async def sa(server: RunningSimulator, clock: FakeClock) -> AsyncIterator[SmsActivateProvider]:
    provider = SmsActivateProvider(
        url=server.url,
        api_key=KEY,
        clock=clock,
        cost_rate=1,
        shop_currency="USD",
        order_ttl_seconds=1200,
        timeout=httpx.Timeout(2.0),
    )
    yield provider
    await provider.aclose()


def req(
    service: str = "whatsapp", country: str = "US", max_cost: int = 10_000, key: str = "order-1"
) -> RentRequest:
    return RentRequest(service=service, country=country, max_cost=max_cost, idempotency_key=key)


async def raw(http: httpx.AsyncClient, **params: str) -> str:
    response = await http.get("/stubs/handler_api.php", params={"api_key": KEY, **params})
    assert response.status_code == 200
    return response.text


# ---------------------------------------------------------------- protocol basics


async def test_bad_key_unknown_action_unknown_activation(
    http: httpx.AsyncClient, server: RunningSimulator, clock: FakeClock
) -> None:
    assert await raw(http, api_key="wrong", action="getBalance") == "BAD_KEY"
    assert await raw(http, action="getSomethingElse") == "BAD_ACTION"
    assert await raw(http) == "BAD_ACTION"
    assert await raw(http, action="getStatus", id="123") == "NO_ACTIVATION"
    assert await raw(http, action="setStatus", id="123", status="8") == "NO_ACTIVATION"
    assert await raw(http, action="getNumber", service="nope", country="0") == "BAD_SERVICE"
    post = await http.post("/stubs/handler_api.php", data={"api_key": KEY, "action": "getBalance"})
    assert post.text.startswith("ACCESS_BALANCE:")
    wrong = SmsActivateProvider(url=server.url, api_key="wrong", clock=clock)
    try:
        with pytest.raises(BadKey):
            await wrong.balance()
    finally:
        await wrong.aclose()


async def test_balance_in_decimal_units(sa: SmsActivateProvider, sim: SimulatorProvider) -> None:
    expected = (await sim.balance()).amount
    bal = await sa.balance()
    assert (bal.amount, bal.currency) == (expected, "USD")


async def test_catalogue_round_trips_exactly(sa: SmsActivateProvider, sim: SimulatorProvider) -> None:
    through_http = {(o.service, o.country): (o.cost, o.stock) for o in await sa.catalogue()}
    direct = {(o.service, o.country): (o.cost, o.stock) for o in await sim.catalogue()}
    assert through_http == direct
    assert len(direct) > 100


# ---------------------------------------------------------------- end to end


async def test_rent_code_another_code_finish(
    sa: SmsActivateProvider, sim: SimulatorProvider, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    offer = sim.offers[("whatsapp", "US")]
    rental = await sa.rent(req())
    act = sim.activations[rental.activation_id]
    assert rental.phone == act.phone.lstrip("+")
    assert rental.cost == offer.cost
    assert rental.created_at == clock.now()
    assert rental.expires_at == clock.now() + timedelta(seconds=1200)
    assert (await sa.status(rental.activation_id)).state is ActivationState.WAITING

    r = await http.post("/control/deliver", json={"activation_id": rental.activation_id, "code": "246810"})
    assert r.status_code == 200 and r.json()["code"] == "246810"
    st = await sa.status(rental.activation_id)
    assert st.state is ActivationState.CODE and [m.code for m in st.messages] == ["246810"]
    batch = await sa.batch_status([rental.activation_id, "999"])
    assert list(batch) == [rental.activation_id]
    assert batch[rental.activation_id].messages[0].message_id == st.messages[0].message_id

    await sa.request_another_code(rental.activation_id)
    assert await raw(http, action="getStatus", id=rental.activation_id) == "STATUS_WAIT_RETRY:246810"
    await http.post("/control/deliver", json={"activation_id": rental.activation_id, "code": "135790"})
    st = await sa.status(rental.activation_id)
    assert [m.code for m in st.messages] == ["135790"]

    await sa.finish(rental.activation_id)
    assert act.state is ActivationState.FINISHED
    with pytest.raises(AlreadyClosed):
        await sa.finish(rental.activation_id)
    assert await raw(http, action="setStatus", id=rental.activation_id, status="8") == "ALREADY_FINISH"


async def test_getnumber_fallback_path(
    sa: SmsActivateProvider, http: httpx.AsyncClient, sim: SimulatorProvider
) -> None:
    reply = await raw(http, action="getNumber", service="tg", country="187")
    assert re.fullmatch(r"ACCESS_NUMBER:\d+:\d+", reply)
    aid = reply.split(":")[1]
    assert sim.activations[aid].service == "telegram" and sim.activations[aid].country == "US"
    active = {r.activation_id: r for r in await sa.active_activations()}
    assert active[aid].service == "telegram" and active[aid].country == "US"


async def test_early_cancel_through_the_control_api(
    sa: SmsActivateProvider, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    r = await http.post("/control/faults", json={"early_cancel_window_s": 60})
    assert r.status_code == 200 and r.json()["early_cancel_window_s"] == 60
    rental = await sa.rent(req())
    with pytest.raises(EarlyCancelDenied) as denied:
        await sa.cancel(rental.activation_id)
    assert denied.value.retry_at is not None
    clock.advance(60)
    await sa.cancel(rental.activation_id)
    assert (await sa.status(rental.activation_id)).state is ActivationState.CANCELLED
    with pytest.raises(AlreadyClosed):
        await sa.cancel(rental.activation_id)


async def test_business_refusals(
    sa: SmsActivateProvider, http: httpx.AsyncClient, sim: SimulatorProvider
) -> None:
    cost = sim.offers[("whatsapp", "US")].cost
    with pytest.raises(PriceTooHigh) as too_high:
        await sa.rent(req(max_cost=cost - 1))
    assert too_high.value.min_price == cost
    r = await http.post("/control/faults", json={"out_of_stock": [["whatsapp", "US"]]})
    assert r.json()["out_of_stock"] == [["whatsapp", "US"]]
    with pytest.raises(OutOfStock):
        await sa.rent(req())
    await sa.rent(req(service="telegram"))  # other offers unaffected
    with pytest.raises(BadService):
        await sa.rent(req(country="AQ"))
    r = await http.post(
        "/control/offers", json={"service": "whatsapp", "country": "US", "cost": 7, "stock": 0}
    )
    assert r.json() == {"service": "whatsapp", "country": "US", "cost": 7, "stock": 0}


async def test_transient_faults_and_lost_replies(
    sa: SmsActivateProvider, http: httpx.AsyncClient, sim: SimulatorProvider
) -> None:
    await http.post("/control/faults", json={"transient_error_rate": 1.0})
    with pytest.raises(ProviderUnavailable):
        await sa.balance()
    with pytest.raises(ProviderUnavailable) as raised:
        await sa.rent(req())
    assert not isinstance(raised.value, OutcomeUnknown)  # ERROR_SQL: definitely not rented
    assert sim.activations == {}
    await http.post("/control/faults", json={"transient_error_rate": 0, "outcome_unknown_rate": 1})
    with pytest.raises(OutcomeUnknown):
        await sa.rent(req())
    [aid] = list(sim.activations)
    await http.post("/control/faults", json={"outcome_unknown_rate": 0})
    assert [r.activation_id for r in await sa.active_activations()] == [aid]  # recoverable


async def test_latency_knob_hits_the_adapter_timeout(
    server: RunningSimulator, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    await http.post("/control/faults", json={"latency_s": 1.0})
    sa = SmsActivateProvider(url=server.url, api_key=KEY, clock=clock, timeout=httpx.Timeout(0.2))
    try:
        with pytest.raises(OutcomeUnknown):
            await sa.rent(req())
    finally:
        await sa.aclose()


# ---------------------------------------------------------------- control API


async def test_control_validation(http: httpx.AsyncClient, sa: SmsActivateProvider) -> None:
    r = await http.post("/control/faults", json={"nonsense": 1})
    assert r.status_code == 400 and "nonsense" in r.json()["error"]
    r = await http.post("/control/faults", json={"transient_error_rate": 3})
    assert r.status_code == 400
    r = await http.post("/control/faults", json={"latency_s": "fast"})
    assert r.status_code == 400
    r = await http.post("/control/faults", content=b"not json")
    assert r.status_code == 400
    r = await http.post("/control/deliver", json={"activation_id": "42"})
    assert r.status_code == 404
    r = await http.post("/control/deliver", json={})
    assert r.status_code == 400
    r = await http.post("/control/offers", json={"service": "nope", "country": "US"})
    assert r.status_code == 400
    rental = await sa.rent(req())
    await sa.finish(rental.activation_id)
    r = await http.post("/control/deliver", json={"activation_id": rental.activation_id})
    assert r.status_code == 409
    r = await http.get("/control/faults")
    assert r.json()["code_delay_s"] is None


async def test_control_reads_what_happened(
    http: httpx.AsyncClient, sa: SmsActivateProvider, clock: FakeClock
) -> None:
    rental = await sa.rent(req())
    await http.post("/control/deliver", json={"activation_id": rental.activation_id, "text": "hello"})
    [act] = (await http.get("/control/activations")).json()
    assert act["id"] == rental.activation_id and act["state"] == "code"
    assert act["messages"][0]["text"] == "hello" and len(act["messages"][0]["code"]) == 6
    calls = (await http.get("/control/calls")).json()
    assert [c["action"] for c in calls] == ["getNumberV2"]
    assert "api_key" not in calls[0]["params"]
    assert calls[0]["params"]["service"] == "wa"
    await sa.balance()
    assert [c["action"] for c in (await http.get("/control/calls?since=1")).json()] == ["getBalance"]


async def test_access_log_masks_the_key(sa: SmsActivateProvider, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await sa.balance()
    access = [r.getMessage() for r in caplog.records if r.name == "numbershop.simulator.access"]
    assert any("/stubs/handler_api.php action=getBalance 200" in line for line in access)
    assert not any(KEY in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- the command


async def test_cli_serve_runs_until_sigterm(tmp_path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "numbershop",
        "simulator",
        "serve",
        "--port",
        "0",
        "--seed",
        "3",
        "--api-key",
        "k123",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/stubs/handler_api\.php", line)
        assert match, line
        async with httpx.AsyncClient(base_url=match.group(1), timeout=5) as client:
            r = await client.get("/stubs/handler_api.php", params={"api_key": "k123", "action": "getBalance"})
            assert r.text.startswith("ACCESS_BALANCE:")
            r = await client.get(
                "/stubs/handler_api.php", params={"api_key": "sandbox", "action": "getBalance"}
            )
            assert r.text == "BAD_KEY"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_rejects_a_bad_port(tmp_path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "numbershop",
        "simulator",
        "serve",
        "--port",
        "70000",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2
    assert "port" in err.decode() and "Traceback" not in err.decode()


async def _providers_status(tmp_path, env_extra: dict[str, str], *args: str) -> tuple[int, str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SMSACTIVATE_", "TEXTVERIFIED_", "PROVIDERS", "REDIS_URL"))
    }
    env.update(env_extra)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "numbershop",
        "providers",
        "status",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_providers_status(tmp_path, server: RunningSimulator, sim: SimulatorProvider) -> None:
    import json

    env = {
        "PROVIDERS": "simulator,smsactivate",
        "SMSACTIVATE_URL": server.url,
        "SMSACTIVATE_API_KEY": KEY,
        "SMSACTIVATE_COST_RATE": "1",
        "SHOP_CURRENCY": "USD",
    }
    code, out, err = await _providers_status(tmp_path, env, "--json")
    assert code == 0, err
    doc = json.loads(out)
    rows = {r["name"]: r for r in doc["providers"]}
    assert list(rows) == ["simulator", "smsactivate"]
    expected = (await sim.balance()).amount
    assert rows["smsactivate"]["balance"]["amount"] == expected
    assert rows["smsactivate"]["breaker"] == {
        "state": "closed",
        "failure_count": 0,
        "last_error": None,
        "opened_at": None,
    }
    assert rows["simulator"]["error"] is None

    code, out, err = await _providers_status(tmp_path, {**env, "SMSACTIVATE_API_KEY": "wrong-key-42"})
    assert code == 1
    line = next(ln for ln in out.splitlines() if ln.startswith("smsactivate"))
    assert "BadKey" in line and " 1 " in line  # one failure counted by the breaker
    assert "wrong-key-42" not in out + err

    code, out, err = await _providers_status(tmp_path, {"PROVIDERS": "smsactivate"})
    assert code == 2
    assert "SMSACTIVATE_API_KEY" in err and "Traceback" not in err
