"""The ticket inbox: listed open first with their age, a ticket with its order's timeline,
resolve with a refund (admin) and reject with a message (support), each once per form and
once per ticket, role-guarded and CSRF-protected; bad input is a 4xx with the reason."""

from __future__ import annotations

from sqlalchemy import select

from core import tickets
from core.db.tables import audit_log, transfers
from core.db.tables import outbox as outbox_t
from core.db.tables import tickets as tickets_t

from .conftest import balance, buy, complete, count, login, nonce, post_form


async def _ticket(shop, telegram_id: int, price: int = 250):
    order = await complete(shop, await buy(shop, telegram_id, funds=1000, price=price))
    return await tickets.open_ticket(shop.db, shop.clock, order_id=order.id, user_id=order.user_id)


async def test_inbox_lists_open_first_and_shows_the_timeline(client, shop, db) -> None:
    first = await _ticket(shop, 801)
    second = await _ticket(shop, 802)
    await tickets.reject(shop.db, shop.clock, first.id, actor="staff:x", note="Used already.")
    await login(client, "viewer")
    page = await client.get("/tickets")
    assert page.status_code == 200
    assert page.text.index(f"#{second.id}<") < page.text.index(f"#{first.id}<")
    assert 'href="/tickets"' in page.text  # in the menu
    detail = await client.get(f"/tickets/{second.id}")
    assert detail.status_code == 200
    assert "The order&#39;s timeline" in detail.text or "The order's timeline" in detail.text
    assert "123456" in detail.text  # the code the buyer received
    assert "/resolve" not in detail.text and "/reject" not in detail.text  # a viewer acts on nothing
    assert (await client.get("/tickets/999999")).status_code == 404


async def test_resolve_refunds_once_per_form_and_per_ticket(client, shop, db) -> None:
    t = await _ticket(shop, 803)
    assert (await balance(db, 803)).balance == 750
    await login(client, "admin")
    form = {"note": "Sorry!", "nonce": nonce()}
    assert (await post_form(client, f"/tickets/{t.id}/resolve", form)).status_code == 303
    assert (await post_form(client, f"/tickets/{t.id}/resolve", form)).status_code == 303
    again = await post_form(client, f"/tickets/{t.id}/resolve", {"nonce": nonce()})
    assert again.status_code == 303
    assert (await balance(db, 803)).balance == 1000
    assert await count(db, transfers, transfers.c.code == "refund") == 1
    assert await count(db, audit_log, audit_log.c.action == "ticket.resolve") == 1
    assert await count(db, outbox_t, outbox_t.c.kind == "ticket") == 1
    page = await client.get(f"/tickets/{t.id}")
    assert "already resolved" in page.text


async def test_roles_csrf_and_bad_input_change_nothing(client, shop, db) -> None:
    t = await _ticket(shop, 804)
    await login(client, "support")
    denied = await post_form(client, f"/tickets/{t.id}/resolve", {"nonce": nonce()})
    assert denied.status_code == 403
    no_csrf = await post_form(
        client, f"/tickets/{t.id}/reject", {"note": "x", "nonce": nonce()}, with_csrf=False
    )
    assert no_csrf.status_code == 403
    empty = await post_form(client, f"/tickets/{t.id}/reject", {"note": "  ", "nonce": nonce()})
    assert empty.status_code == 400 and "write the message" in empty.text
    assert (
        await post_form(client, "/tickets/999999/reject", {"note": "x", "nonce": nonce()})
    ).status_code == 404
    async with db.read() as conn:
        assert (await conn.execute(select(tickets_t.c.state))).scalars().all() == ["open"]
    done = await post_form(
        client, f"/tickets/{t.id}/reject", {"note": "The code was used.", "nonce": nonce()}
    )
    assert done.status_code == 303
    await login(client, "admin")
    late = await post_form(client, f"/tickets/{t.id}/resolve", {"nonce": nonce()})
    assert late.status_code == 409 and "rejected" in late.text
    assert (await balance(db, 804)).balance == 750
    assert await count(db, transfers, transfers.c.code == "refund") == 0
