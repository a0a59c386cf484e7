"""The Providers page shows the delivery statistics routing ranks offers by."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from core import delivery_stats
from tests.integration.orders_support import ScriptedProvider, Shop

from .conftest import WEBHOOK_SECRET, login


@pytest.fixture
async def shop(db, clock) -> Shop:
    s = Shop(
        db,
        clock,
        {
            "alpha": ScriptedProvider("alpha", clock, cost=40),
            "beta": ScriptedProvider("beta", clock, cost=45),
        },
        TEXTVERIFIED_WEBHOOK_SECRET=WEBHOOK_SECRET,
        ADMIN_SECRET_KEY="k" * 32,
        PROVIDERS="alpha,beta",
        ALPHA_KIND="simulator",
        BETA_KIND="simulator",
        ROUTING_EXPLORATION=0,
        ROUTING_CANCEL_COUNTS_AFTER_SECONDS=0,
    )
    await s.setup_catalogue()
    return s


def delivery_row(html: str, provider: str) -> str:
    table = html.split("Delivered codes", 1)[1].split("</table>", 1)[0]
    match = re.search(rf"<tr><td>{provider}</td>.*?</tr>", table, re.S)
    assert match, provider
    return match.group(0)


async def test_providers_page_shows_rentals_codes_rate_and_floor(client, staff, shop, clock):
    await login(client, "viewer")
    empty = await client.get("/providers")
    assert empty.status_code == 200 and "No closed orders counted yet" in empty.text

    user = await shop.user(1, funds=5000)
    for n in range(8):  # eight numbers from alpha, no code: below the floor
        quote = await shop.quote(user.id)
        order = await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key=f"a{n}")
        await shop.orders.cancel(order.id, user_id=user.id)
    clock.advance(shop.settings.ROUTING_FOLD_LAG_SECONDS + 1)
    assert await delivery_stats.fold_closed_orders(shop.db, clock, shop.settings) == 8
    quote = await shop.quote(user.id)
    order = await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key="b")
    assert order.provider == "beta"  # dearer, but alpha's numbers got no codes
    clock.advance(42)
    shop.providers["beta"].deliver(order.activation_id, "123456")
    await shop.orders.poll_orders([order.id])
    clock.advance(shop.settings.ROUTING_FOLD_LAG_SECONDS + 1)
    assert await delivery_stats.fold_closed_orders(shop.db, clock, shop.settings) == 1

    page = await client.get("/providers")
    assert page.status_code == 200
    alpha, beta = delivery_row(page.text, "alpha"), delivery_row(page.text, "beta")
    assert ">0 / 8</td>" in alpha and "below floor" in alpha
    assert ">1 / 1</td>" in beta and "75%" in beta and "42 s" in beta
    assert "below floor" not in beta
    clock.advance(timedelta(days=1).total_seconds())
    later = delivery_row((await client.get("/providers")).text, "alpha")
    assert "below floor" not in later  # a day of silence: old failures no longer condemn it
