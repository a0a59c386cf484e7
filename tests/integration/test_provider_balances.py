"""Upstream balances: a staff alert once per downward crossing of the threshold, re-armed when
the balance rises back, and one alert even when two schedulers check at the same moment."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from core import provider_balances
from core.config import ConfigError, Settings
from core.db.engine import Database
from core.db.tables import outbox
from core.db.tables import provider_balances as balances_t
from core.providers.base import Balance
from core.providers.errors import ProviderUnavailable
from scheduler.tickers import ShopJobs

STAFF = 4242
THRESHOLD = 500  # $5.00


class FakeProvider:
    """Only what the balance check uses: a balance the test sets, and an optional gate that
    holds every read until the test opens it (both schedulers at the provider at once)."""

    def __init__(self, name: str, amount: int, currency: str = "USD") -> None:
        self.name = name
        self.amount = amount
        self.currency = currency
        self.failure: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.waiting = 0

    async def balance(self) -> Balance:
        if self.failure is not None:
            raise self.failure
        if self.gate is not None:
            self.waiting += 1
            await self.gate.wait()
        return Balance(self.amount, self.currency)


async def check(db, clock, provider, threshold=THRESHOLD):
    return await provider_balances.check(
        db, clock, {provider.name: provider}, {provider.name: threshold}, staff_chat_id=STAFF
    )


async def alerts(db) -> list[dict]:
    async with db.read() as conn:
        rows = (await conn.execute(select(outbox).where(outbox.c.kind == "staff_alert"))).mappings().all()
    return [dict(r) for r in rows]


async def snapshots(db) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(balances_t))).scalar_one())


async def test_one_alert_per_crossing(db, clock):
    alpha = FakeProvider("alpha", 1_000)
    [above] = await check(db, clock, alpha)
    assert (above.low, above.alerted) == (False, False)
    assert await alerts(db) == []

    alpha.amount = 499
    clock.advance(300)
    [dropped] = await check(db, clock, alpha)
    assert (dropped.low, dropped.alerted) == (True, True)
    [first] = await alerts(db)
    assert first["chat_id"] == STAFF
    assert "alpha" in first["payload"]["text"] and "$4.99" in first["payload"]["text"]

    for amount in (499, 300, 10, 0):  # stays below over several polls: still one alert
        alpha.amount = amount
        clock.advance(300)
        [still] = await check(db, clock, alpha)
        assert (still.low, still.alerted) == (True, False)
    assert len(await alerts(db)) == 1

    alpha.amount = 500  # back at the threshold: re-armed, no alert
    clock.advance(300)
    [back] = await check(db, clock, alpha)
    assert (back.low, back.alerted) == (False, False)
    assert len(await alerts(db)) == 1

    alpha.amount = 100  # drops again: a second crossing, a second alert
    clock.advance(300)
    [again] = await check(db, clock, alpha)
    assert again.alerted
    got = await alerts(db)
    assert len(got) == 2 and got[0]["dedupe_key"] != got[1]["dedupe_key"]
    assert await snapshots(db) == 8


async def test_unknown_then_below_alerts_once(db, clock):
    alpha = FakeProvider("alpha", 100)
    assert [c.alerted for c in await check(db, clock, alpha)] == [True]
    assert [c.alerted for c in await check(db, clock, alpha)] == [False]
    assert len(await alerts(db)) == 1


async def test_no_threshold_or_failed_read_never_alerts(db, clock):
    alpha = FakeProvider("alpha", 0)
    beta = FakeProvider("beta", 0)
    beta.failure = ProviderUnavailable("down", provider="beta")
    got = await provider_balances.check(
        db, clock, {"alpha": alpha, "beta": beta}, {"beta": THRESHOLD}, staff_chat_id=STAFF
    )
    assert [(c.provider, c.low, c.alerted, c.error is not None) for c in got] == [
        ("alpha", False, False, False),
        ("beta", False, False, True),
    ]
    assert await alerts(db) == [] and await snapshots(db) == 1


async def test_balance_in_another_currency_is_not_compared(db, clock):
    alpha = FakeProvider("alpha", 1, currency="RUB")
    got = await provider_balances.check(
        db, clock, {"alpha": alpha}, {"alpha": THRESHOLD}, staff_chat_id=STAFF, currencies={"alpha": "USD"}
    )
    assert [(c.low, c.alerted) for c in got] == [(False, False)]
    assert await alerts(db) == []


async def test_two_concurrent_checks_alert_once(db, clock):
    db2 = Database(db.url)
    try:
        alpha = FakeProvider("alpha", 1_000)
        await check(db, clock, alpha)
        for round_ in (1, 2):  # a crossing, then (after re-arming) a second one
            alpha.amount = 100
            alpha.gate = asyncio.Event()
            alpha.waiting = 0
            clock.advance(300)
            runs = [asyncio.ensure_future(check(d, clock, alpha)) for d in (db, db2)]
            while alpha.waiting < 2:  # both have asked the provider before either writes
                await asyncio.sleep(0)
            alpha.gate.set()
            results = await asyncio.gather(*runs)
            flags = sorted(c.alerted for [c] in results)
            assert all(c.low for [c] in results)
            assert flags == [False, True]
            assert len(await alerts(db)) == round_
            alpha.gate = None
            alpha.amount = 1_000
            await check(db, clock, alpha)
    finally:
        await db2.dispose()


def test_threshold_setting_is_parsed_in_provider_currency():
    s = Settings(PROVIDERS="alpha", ALPHA_KIND="simulator", ALPHA_BALANCE_ALERT_BELOW="5.50")
    assert s.provider_instances[0].balance_alert_below == 550
    assert provider_balances.thresholds(s) == {"alpha": 550}
    assert provider_balances.thresholds(Settings(PROVIDERS="alpha", ALPHA_KIND="simulator")) == {}


@pytest.mark.parametrize("raw", ["-1", "0", "five", "1.005"])
def test_bad_threshold_stops_start_up(raw):
    with pytest.raises(ConfigError, match="ALPHA_BALANCE_ALERT_BELOW"):
        Settings(PROVIDERS="alpha", ALPHA_KIND="simulator", ALPHA_BALANCE_ALERT_BELOW=raw)


async def test_ticker_reads_thresholds_from_settings(db, clock):
    settings = Settings(
        PROVIDERS="alpha", ALPHA_KIND="simulator", ALPHA_BALANCE_ALERT_BELOW="5.00", STAFF_CHAT_ID=STAFF
    )
    alpha = FakeProvider("alpha", 499)
    jobs = ShopJobs(
        SimpleNamespace(db=db, clock=clock, settings=settings, providers={"alpha": alpha}, orders=None)
    )
    [got] = await jobs.check_balances()
    assert got.alerted and got.threshold == 500
    [again] = await jobs.check_balances()
    assert again.low and not again.alerted
    assert len(await alerts(db)) == 1
