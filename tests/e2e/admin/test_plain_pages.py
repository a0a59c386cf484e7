"""Pages speak in plain words: names with flags, amounts in the shop currency, sentences for
events and audit rows, the shop's accounts named for people, empty pages that say what they
are for."""

from __future__ import annotations

import pytest

from .conftest import buy, complete, login, nonce, post_form


@pytest.fixture
async def admin_client(client, staff):
    await login(client, "admin")
    return client


async def test_order_page_in_plain_words(admin_client, shop, db) -> None:
    if db.is_postgres:
        pytest.skip("rendering is the same on both databases")
    order = await complete(shop, await buy(shop, 4321, funds=250_000, price=123_456))
    html = (await admin_client.get(f"/orders/{order.id}")).text
    assert "WhatsApp" in html and "\U0001f1ec\U0001f1e7 United Kingdom" in html
    assert "Ordered for $1,234.56; the money is held until a code arrives." in html
    assert "Code arrived; the held money was captured." in html
    assert "Shop revenue" in html and "revenue#" not in html
    assert '"price": 123456' not in html  # no raw event data


async def test_audit_names_the_user_and_formats_the_amount(admin_client, shop, db) -> None:
    if db.is_postgres:
        pytest.skip("rendering is the same on both databases")
    await shop.user(4322)
    await post_form(
        admin_client, "/users/4322/credit", {"amount": "1234.5", "reason": "goodwill", "nonce": nonce()}
    )
    html = (await admin_client.get("/audit")).text
    assert "Credited $1,234.50 to the wallet" in html and "123450" not in html
    assert '<a href="/users/4322">4322</a>' in html and "admin (staff)" in html


async def test_ledger_explains_kinds_and_names_accounts(admin_client, shop, db) -> None:
    if db.is_postgres:
        pytest.skip("rendering is the same on both databases")
    await buy(shop, 4323, funds=1000)
    html = (await admin_client.get("/ledger")).text
    for word in ("Hold", "Capture", "Void", "Refund", "Top-up", "Staff adjustment", "Top-ups received"):
        assert word in html, word
    assert ">topups<" not in html and "topups#" not in html


async def test_empty_pages_say_what_they_are_for(admin_client, db) -> None:
    if db.is_postgres:
        pytest.skip("rendering is the same on both databases")
    assert "Every number a user buys in the bot shows here" in (await admin_client.get("/orders")).text
    assert "Everyone who starts the bot shows here" in (await admin_client.get("/users")).text
    assert "Reconciliation checks the books" in (await admin_client.get("/reconciliation")).text
    assert "No orders match these filters." in (await admin_client.get("/orders?status=failed")).text
