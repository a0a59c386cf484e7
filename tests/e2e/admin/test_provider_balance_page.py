"""The Providers page shows each upstream balance and marks one below its alert threshold."""

from __future__ import annotations

import re

import pytest

from core.db.tables import provider_balances
from tests.integration.orders_support import ScriptedProvider, Shop

from .conftest import WEBHOOK_SECRET, login


@pytest.fixture
async def shop(db, clock) -> Shop:
    s = Shop(
        db,
        clock,
        {
            "alpha": ScriptedProvider("alpha", clock),
            "beta": ScriptedProvider("beta", clock),
            "gamma": ScriptedProvider("gamma", clock),
        },
        TEXTVERIFIED_WEBHOOK_SECRET=WEBHOOK_SECRET,
        ADMIN_SECRET_KEY="k" * 32,
        PROVIDERS="alpha,beta,gamma",
        ALPHA_KIND="simulator",
        ALPHA_BALANCE_ALERT_BELOW="50.00",
        BETA_KIND="simulator",
        BETA_BALANCE_ALERT_BELOW="50.00",
        GAMMA_KIND="simulator",
    )
    await s.setup_catalogue()
    return s


def row_of(html: str, name: str) -> str:
    match = re.search(rf"<tr><td>{name}</td>.*?</tr>", html, re.S)
    assert match, name
    return match.group(0)


async def test_providers_page_shows_balance_and_low_badge(client, staff, shop, clock):
    async with shop.db.begin() as conn:
        for name, amount in (("alpha", 4321), ("beta", 5000), ("gamma", 1)):
            await conn.execute(
                provider_balances.insert().values(
                    provider=name, amount=amount, currency="USD", taken_at=clock.now()
                )
            )
    await login(client, "viewer")
    page = await client.get("/providers")
    assert page.status_code == 200
    alpha, beta, gamma = (row_of(page.text, n) for n in ("alpha", "beta", "gamma"))
    assert "$43.21" in alpha and ">low<" in alpha and "alert below $50.00" in alpha
    assert "$50.00" in beta and ">low<" not in beta  # at the threshold is not low
    assert "$0.01" in gamma and ">low<" not in gamma and "alert below" not in gamma  # no threshold
