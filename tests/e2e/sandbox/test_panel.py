"""The delivery panel against a real database: it lists open activations with their orders,
and a delivered code completes the order through core (hold captured, notification queued)
at once — not when the poll ticker next comes round."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core import catalogue
from core.app import build_core
from core.clock import FakeClock
from core.config import Settings
from core.db.engine import Database
from core.db.tables import outbox
from core.invariants import check_invariants
from core.providers.simulator import SimulatorProvider
from core.quotes import create_quote
from numbershop.sandbox.panel import DeliveryError, DeliveryPanel


async def _shop(db: Database, clock: FakeClock):
    sim = SimulatorProvider(seed=3, clock=clock, code_delay_s=(30.0, 30.0))
    async with db.begin() as conn:
        await catalogue.seed_reference_data(conn)
    await catalogue.sync_catalogue(db, sim, clock)
    settings = Settings(_env_file=None, DATABASE_URL=db.url, PROVIDERS="simulator")
    core = build_core(settings, clock=clock, providers={"simulator": sim}, db=db)
    woken: list[bool] = []
    panel = DeliveryPanel(sim, core, on_delivered=lambda: woken.append(True))
    return sim, core, panel, woken


async def _buy(core, telegram_id: int, key: str):
    await core.wallets.top_up(telegram_id, 5000, source="test", reference=f"fund-{key}")
    user = await core.wallets.show(telegram_id)
    async with core.db.begin() as conn:
        quote = await create_quote(
            conn,
            user_id=user.user_id,
            service="whatsapp",
            country="GB",
            markup_percent=20,
            now=core.clock.now(),
            ttl_seconds=600,
        )
    return await core.orders.purchase(
        user_id=user.user_id,
        quote_id=quote.id,
        idempotency_key=f"tg:{telegram_id}:1:{key}",
        chat_id=telegram_id,
    )


async def test_lists_open_activations_with_their_orders(db: Database, clock: FakeClock) -> None:
    sim, core, panel, _ = await _shop(db, clock)
    assert await panel.open_activations() == []
    first = await _buy(core, 501, "a")
    clock.advance(5)
    second = await _buy(core, 502, "b")
    listed = await panel.open_activations()
    assert [a["order_id"] for a in listed] == [second.id, first.id]  # newest first
    top = listed[0]
    assert top["activation_id"] == second.activation_id and top["telegram_id"] == 502
    assert (top["service_name"], top["country_name"], top["order_status"]) == (
        "WhatsApp",
        "United Kingdom",
        "waiting",
    )
    assert top["phone"] == second.phone and top["codes"] == 0
    assert top["auto_code_in"] == 30 and top["expires_in"] > 0


async def test_a_delivered_code_completes_the_order_at_once(db: Database, clock: FakeClock) -> None:
    sim, core, panel, woken = await _shop(db, clock)
    order = await _buy(core, 601, "c")
    held = await core.wallets.show(601)
    assert held.held == order.price

    done = await panel.deliver(order.activation_id, "424242")
    assert (done.code, done.order_id, done.order_status) == ("424242", order.id, "completed")
    assert woken == [True]
    after = await core.wallets.show(601)
    assert (after.balance, after.held) == (5000 - order.price, 0)
    async with db.read() as conn:
        rows = (
            await conn.execute(select(outbox.c.kind, outbox.c.payload).where(outbox.c.order_id == order.id))
        ).all()
    assert any("424242" in str(payload) for _, payload in rows), rows
    assert await check_invariants(db, clock.now(), 0) == []

    # Another code on the same (still open) activation is recorded without a second charge.
    await panel.deliver(order.activation_id, "515151")
    assert (await core.wallets.show(601)).balance == 5000 - order.price


async def test_refuses_unknown_and_closed_activations(db: Database, clock: FakeClock) -> None:
    sim, core, panel, woken = await _shop(db, clock)
    with pytest.raises(DeliveryError, match="no activation"):
        await panel.deliver("999")
    order = await _buy(core, 701, "d")
    result = await core.orders.cancel(order.id, user_id=order.user_id)
    assert result is not None
    await core.orders.drain_background()  # the upstream cancel runs after the answer
    assert await panel.open_activations() == []
    with pytest.raises(DeliveryError):
        await panel.deliver(order.activation_id)
    assert (await core.wallets.show(701)).balance == 5000 and woken == []
