"""Per-country markups next to the per-service ones, and the quotes that follow them."""

from __future__ import annotations

from sqlalchemy import select

from core.db.tables import audit_log
from core.quotes import price_quote

from .conftest import login, nonce, post_form


async def quoted(shop, user_id: int) -> int:
    async with shop.db.read() as conn:
        q = await price_quote(
            conn,
            user_id=user_id,
            service="whatsapp",
            country="GB",
            markup_percent=shop.settings.MARKUP_PERCENT,
            now=shop.clock.now(),
            ttl_seconds=60,
        )
    return q.price


async def test_country_markup_changes_the_quote_and_is_audited(client, staff, shop) -> None:
    user = await shop.user(801)
    default = await quoted(shop, user.id)  # cheapest cost 50 at the default 20% → 60
    assert default == 60
    await login(client, "admin")
    r = await post_form(
        client,
        "/prices/countries/GB",
        {"nonce": nonce(), "mode": "markup", "value": "50", "reason": "support cost"},
    )
    assert r.status_code == 303
    assert await quoted(shop, user.id) == 75
    page = (await client.get("/prices")).text
    assert "50%" in page.split('id="country-GB"')[1].split("</tr>")[0]
    # A service's own markup still wins over the country's.
    r = await post_form(
        client,
        "/prices/services/whatsapp",
        {"nonce": nonce(), "mode": "markup", "value": "10", "reason": "promo"},
    )
    assert r.status_code == 303 and await quoted(shop, user.id) == 55
    await post_form(
        client, "/prices/services/whatsapp", {"nonce": nonce(), "mode": "clear", "reason": "promo over"}
    )
    await post_form(
        client, "/prices/countries/GB", {"nonce": nonce(), "mode": "clear", "reason": "back to normal"}
    )
    assert await quoted(shop, user.id) == 60
    async with shop.db.read() as conn:
        actions = [
            r[0]
            for r in await conn.execute(select(audit_log.c.action).order_by(audit_log.c.id))
            if r[0].startswith("price.")
        ]
    assert actions == ["price.country.set", "price.set", "price.clear", "price.country.clear"]


async def test_bad_markup_stays_on_the_page(client, staff, shop) -> None:
    await login(client, "admin")
    r = await post_form(
        client,
        "/prices/countries/GB",
        {"nonce": nonce(), "mode": "markup", "value": "lots", "reason": "typo here"},
    )
    assert r.status_code == 400 and "whole number of percent" in r.text
    assert 'value="lots"' in r.text and 'value="typo here"' in r.text
    r = await post_form(
        client,
        "/prices/countries/ZZ",
        {"nonce": nonce(), "mode": "markup", "value": "5", "reason": "no such"},
    )
    assert r.status_code == 404
    await login(client, "viewer")


async def test_viewers_see_prices_but_cannot_change_them(client, staff, shop) -> None:
    await login(client, "viewer")
    page = await client.get("/prices")
    assert page.status_code == 200 and "/prices/countries/GB" not in page.text
    r = await post_form(
        client, "/prices/countries/GB", {"nonce": nonce(), "mode": "markup", "value": "5", "reason": "sneaky"}
    )
    assert r.status_code == 403


async def test_filters_are_selects_and_own_row_has_no_disable(client, staff, shop) -> None:
    await login(client, "admin")
    orders = (await client.get("/orders")).text
    assert '<select name="service">' in orders and '<option value="whatsapp"' in orders
    assert '<select name="country">' in orders and '<select name="provider">' in orders
    audit = (await client.get("/audit")).text
    assert '<select name="actor">' in audit and '<select name="action">' in audit
    page = (await client.get("/staff")).text
    assert 'action="/staff/viewer/disabled"' in page and 'action="/staff/admin/disabled"' not in page
