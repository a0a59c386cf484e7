"""Each role against each action, and CSRF on every form."""

from __future__ import annotations

import pytest

from core.db.tables import audit_log, transfers
from core.db.tables import staff as staff_t

from .conftest import balance, buy, complete, count, csrf, login, nonce, post_form

ACTIONS = {
    # name: (minimum role, path template, form)
    "credit": ("support", "/users/{tid}/credit", {"amount": "2.50", "reason": "goodwill"}),
    "debit": ("support", "/users/{tid}/debit", {"amount": "1.00", "reason": "correction"}),
    "cancel": ("support", "/orders/{waiting}/cancel", {"reason": "user asked"}),
    "refund": ("admin", "/orders/{completed}/refund", {"reason": "code did not work"}),
    "block": ("admin", "/users/{tid}/block", {"blocked": "1", "reason": "abuse"}),
    "price": ("admin", "/providers/prices/whatsapp", {"mode": "markup", "value": "30", "reason": "promo"}),
    "add_staff": ("admin", "/staff", {"username": "newbie", "role": "viewer", "password": "password123"}),
}
RANK = {"viewer": 0, "support": 1, "admin": 2}


@pytest.fixture
async def world(shop):
    waiting = await buy(shop, 555, funds=1000)
    done = await buy(shop, 556, funds=1000)
    done = await complete(shop, done)
    assert waiting.status == "waiting" and done.status == "completed"
    return {"tid": 555, "waiting": waiting.id, "completed": done.id}


@pytest.mark.parametrize("role", ["viewer", "support", "admin"])
@pytest.mark.parametrize("action", list(ACTIONS))
async def test_role_against_action(client, staff, world, db, role, action) -> None:
    if db.is_postgres:
        pytest.skip("the role matrix is about the web layer; SQLite is enough")
    needed, template, form = ACTIONS[action]
    await login(client, role)
    audits, moves = await count(db, audit_log), await count(db, transfers)
    r = await post_form(client, template.format(**world), {**form, "nonce": nonce()})
    if RANK[role] >= RANK[needed]:
        assert r.status_code == 303, r.text
        assert await count(db, audit_log) == audits + 1
    else:
        assert r.status_code == 403, r.text
        assert f"needs the {needed} role" in r.text
        assert await count(db, audit_log) == audits
        assert await count(db, transfers) == moves
        assert await count(db, staff_t) == 3


async def test_post_without_csrf_token_is_refused_and_changes_nothing(client, staff, world, db) -> None:
    await login(client, "admin")
    before = await balance(db, 555)
    r = await post_form(
        client, "/users/555/credit", {"amount": "5.00", "reason": "x" * 5, "nonce": nonce()}, with_csrf=False
    )
    assert r.status_code == 403
    assert "security token" in r.text
    r = await client.post(
        "/users/555/credit",
        data={"amount": "5.00", "reason": "xxxxx", "nonce": nonce(), "_csrf_token": "forged" * 20},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert await balance(db, 555) == before
    # Login itself is protected too (login CSRF).
    await post_form(client, "/logout", {})
    r = await client.post("/login", data={"username": "admin", "password": "x"}, follow_redirects=False)
    assert r.status_code == 403


async def test_api_with_a_session_needs_the_csrf_header_but_a_bearer_token_does_not(
    client, staff, staff_accounts, world, db
) -> None:
    await login(client, "support")
    body = {"amount": "1.00", "reason": "api test", "idempotency_key": "k1"}
    r = await client.post("/api/users/555/credit", json=body)
    assert r.status_code == 403
    token = await csrf(client)
    r = await client.post("/api/users/555/credit", json=body, headers={"X-CSRFToken": token})
    assert r.status_code == 200, r.text
    api_token = await staff_accounts.create_token("support", "bot")
    client.cookies.clear()
    r = await client.post(
        "/api/users/555/credit",
        json={**body, "idempotency_key": "k2"},
        headers={"Authorization": f"Bearer {api_token}"},
    )
    assert r.status_code == 200, r.text
    wallet = await balance(db, 555)
    assert (wallet.balance, wallet.held) == (1000 + 200, 100)  # two credits; the purchase is held
