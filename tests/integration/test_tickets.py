"""Tickets against a real database: who may open one, once per order, and staff outcomes
that move money once however many times or ways they are asked."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from core import tickets
from core.db.tables import audit_log, transfers
from core.db.tables import outbox as outbox_t
from core.db.tables import tickets as tickets_t
from core.errors import InvalidInput, OrderNotFound
from tests.integration.orders_support import ScriptedProvider, Shop


@pytest.fixture
async def shop(db, clock):
    s = Shop(db, clock, {"alpha": ScriptedProvider("alpha", clock)})
    await s.setup_catalogue()
    yield s
    await s.assert_books_clean()


async def _count(db, table, *where):
    async with db.read() as conn:
        return await conn.scalar(select(func.count()).select_from(table).where(*where))


async def _completed(shop, user, key="k1"):
    quote = await shop.quote(user.id, price=100)
    order = await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key=key)
    shop.providers["alpha"].deliver(order.activation_id, "123456")
    await shop.orders.poll_orders([order.id])
    return await shop.orders.get_order(order.id)


async def _open(shop, order, user):
    return await tickets.open_ticket(shop.db, shop.clock, order_id=order.id, user_id=user.id)


async def test_two_concurrent_opens_make_one_ticket(shop):
    user = await shop.user(1, funds=500)
    order = await _completed(shop, user)
    results = await asyncio.gather(*(_open(shop, order, user) for _ in range(4)), return_exceptions=True)
    made = [r for r in results if isinstance(r, tickets.Ticket)]
    refused = [r for r in results if isinstance(r, tickets.TicketRefused)]
    assert len(made) == 1 and len(refused) == 3, results
    assert all(r.why == "exists" for r in refused)
    assert made[0].state == "open" and made[0].order_id == order.id
    assert await _count(shop.db, tickets_t) == 1


async def test_refusals_change_nothing(shop, clock):
    user = await shop.user(1, funds=500)
    other = await shop.user(2, funds=500)
    order = await _completed(shop, user)
    with pytest.raises(OrderNotFound):  # someone else's order looks unknown
        await _open(shop, order, other)
    waiting = await shop.orders.purchase(
        user_id=user.id, quote_id=await shop.quote(user.id), idempotency_key="k2"
    )
    with pytest.raises(tickets.TicketRefused) as not_done:
        await _open(shop, waiting, user)
    assert not_done.value.why == "not_completed"
    clock.advance((tickets.TICKET_WINDOW + timedelta(seconds=1)).total_seconds())
    with pytest.raises(tickets.TicketRefused) as late:
        await _open(shop, order, user)
    assert late.value.why == "too_late"
    assert await _count(shop.db, tickets_t) == 0
    await shop.orders.cancel(waiting.id, user_id=user.id)


async def test_second_ticket_is_refused(shop):
    user = await shop.user(1, funds=500)
    order = await _completed(shop, user)
    await tickets.open_ticket(shop.db, shop.clock, order_id=order.id, user_id=user.id, staff_chat_id=-100)
    assert await _count(shop.db, outbox_t, outbox_t.c.kind == "staff_alert", outbox_t.c.chat_id == -100) == 1
    with pytest.raises(tickets.TicketRefused) as again:
        await _open(shop, order, user)
    assert again.value.why == "exists"
    assert await _count(shop.db, tickets_t) == 1


async def test_concurrent_resolves_refund_once(shop):
    user = await shop.user(1, funds=500)
    order = await _completed(shop, user)
    assert (await shop.wallet(user)).balance == 400
    ticket = await _open(shop, order, user)
    results = await asyncio.gather(
        *(
            tickets.resolve(shop.db, shop.clock, shop.orders, ticket.id, actor=f"staff:s{i}")
            for i in range(3)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(r, tickets.Outcome) for r in results), results
    assert sum(r.changed for r in results) == 1
    assert all(r.ticket.state == "resolved" for r in results)
    assert (await shop.wallet(user)).balance == 500
    assert await _count(shop.db, transfers, transfers.c.code == "refund") == 1
    assert await _count(shop.db, audit_log, audit_log.c.action == "ticket.resolve") == 1
    assert await _count(shop.db, outbox_t, outbox_t.c.kind == "ticket") == 1
    assert (await shop.orders.get_order(order.id)).status == "refunded"


async def test_resolve_and_reject_race_ends_one_way(shop):
    user = await shop.user(1, funds=500)
    order = await _completed(shop, user)
    ticket = await _open(shop, order, user)
    resolved, rejected = await asyncio.gather(
        tickets.resolve(shop.db, shop.clock, shop.orders, ticket.id, actor="staff:a"),
        tickets.reject(shop.db, shop.clock, ticket.id, actor="staff:b", note="The code was used."),
        return_exceptions=True,
    )
    final = await tickets.get_ticket(shop.db, ticket.id)
    refunds = await _count(shop.db, transfers, transfers.c.code == "refund")
    if final.state == "resolved":
        assert isinstance(resolved, tickets.Outcome) and resolved.changed
        assert isinstance(rejected, tickets.TicketClosed)
        assert refunds == 1 and (await shop.wallet(user)).balance == 500
    else:
        assert final.state == "rejected"
        assert isinstance(rejected, tickets.Outcome) and rejected.changed
        assert isinstance(resolved, tickets.TicketClosed)
        assert refunds == 0 and (await shop.wallet(user)).balance == 400


async def test_reject_tells_the_buyer_and_is_idempotent(shop):
    user = await shop.user(1, funds=500)
    order = await _completed(shop, user)
    ticket = await _open(shop, order, user)
    with pytest.raises(InvalidInput):
        await tickets.reject(shop.db, shop.clock, ticket.id, actor="cli", note="  ")
    first = await tickets.reject(shop.db, shop.clock, ticket.id, actor="cli", note="The site took the code.")
    again = await tickets.reject(shop.db, shop.clock, ticket.id, actor="cli", note="The site took the code.")
    assert first.changed and not again.changed
    assert first.ticket.staff_note == "The site took the code."
    with pytest.raises(tickets.TicketClosed):
        await tickets.resolve(shop.db, shop.clock, shop.orders, ticket.id, actor="cli")
    assert (await shop.wallet(user)).balance == 400
    assert await _count(shop.db, outbox_t, outbox_t.c.kind == "ticket") == 1
    assert await _count(shop.db, audit_log, audit_log.c.action == "ticket.reject") == 1


async def test_list_puts_open_tickets_first(shop, clock):
    user = await shop.user(1, funds=1000)
    made = []
    for i in range(3):
        order = await _completed(shop, user, key=f"k{i}")
        made.append(await _open(shop, order, user))
        clock.advance(60)
    await tickets.reject(shop.db, shop.clock, made[0].id, actor="cli", note="No.")
    listed = await tickets.list_tickets(shop.db)
    assert [t.id for t in listed] == [made[1].id, made[2].id, made[0].id]
    assert [t.id for t in await tickets.list_tickets(shop.db, state="rejected")] == [made[0].id]
    assert await tickets.count_open(shop.db) == 2
