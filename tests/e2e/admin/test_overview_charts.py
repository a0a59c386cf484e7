"""The overview's charts: drawn from the rollups, accessible, with their numbers as tables."""

from __future__ import annotations

import re

from core import rollups

from .conftest import buy, complete, login


async def test_charts_show_the_rollups_with_their_numbers(client, staff, shop, clock) -> None:
    done = await complete(shop, await buy(shop, 901, price=250))
    await buy(shop, 902, price=120)
    assert done.status == "completed"
    await login(client, "viewer")
    before = (await client.get("/")).text
    assert "The charts fill once the scheduler" in before
    await rollups.refresh(shop.db, clock.now())
    page = (await client.get("/")).text
    svgs = re.findall(r"<svg class=\"chart\".*?</svg>", page, re.S)
    assert len(svgs) == 8
    for svg in svgs:  # every chart names itself for screen readers
        assert re.search(r"<title id=\"chart\d+-t\">[^<]+</title><desc id=\"chart\d+-d\">[^<]+</desc>", svg)
    for title in (
        "Revenue per day",
        "Orders per day",
        "Code delivery rate by provider",
        "Code delivery rate by service",
        "Code delivery rate by country",
        "Time to first code",
        "Money back by reason",
        "Top-ups by method",
    ):
        assert f"<figcaption>{title}" in page
    assert page.count("<summary>Numbers</summary>") == 8
    revenue = page.split('id="chart-revenue"')[1].split("</figure>")[0]
    assert "$2.50" in revenue  # today's captured revenue, in the table and the tooltip
    provider = page.split('id="chart-delivery_provider"')[1].split("</figure>")[0]
    assert "100.0%" in provider and "alpha" in provider  # one finished order, delivered
