"""Dashboard actions: they act once per form, refuse bad input without changing anything,
and leave an audit row saying who, what and why."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.db.tables import audit_log, orders, price_overrides, transfers, users

from .conftest import balance, buy, complete, count, login, nonce, post_form


@pytest.fixture
async def admin_client(client, staff):
    await login(client, "admin")
    return client


async def _audit(db, action: str) -> list:
    async with db.read() as conn:
        return (await conn.execute(select(audit_log).where(audit_log.c.action == action))).mappings().all()


async def test_credit_double_submit_acts_once(admin_client, shop, db) -> None:
    await shop.user(777, funds=0)
    form = {"amount": "12.34", "reason": "compensation for outage", "nonce": nonce()}
    first = await post_form(admin_client, "/users/777/credit", form)
    second = await post_form(admin_client, "/users/777/credit", form)
    assert first.status_code == second.status_code == 303
    assert (await balance(db, 777)).balance == 1234
    [row] = await _audit(db, "wallet.credit")
    assert row["actor"] == "staff:admin" and row["reason"] == "compensation for outage"
    page = await admin_client.get("/users/777")
    assert "$12.34" in page.text and "already submitted" in page.text
    # A new form (new nonce) is a new credit.
    await post_form(admin_client, "/users/777/credit", {**form, "nonce": nonce()})
    assert (await balance(db, 777)).balance == 2468


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"amount": "-5", "reason": "oops"}, "must be positive"),
        ({"amount": "1.005", "reason": "oops"}, "decimal places"),
        ({"amount": "ten", "reason": "oops"}, "not an amount"),
        ({"amount": "0", "reason": "oops"}, "greater than zero"),
        ({"amount": "", "reason": "oops"}, "enter an amount"),
        ({"amount": "5.00", "reason": ""}, "reason is required"),
        ({"amount": "5.00", "reason": "  "}, "reason is required"),
        ({"amount": "5.00", "reason": "ok", "nonce": ""}, "reload the page"),
        ({"amount": "999.00", "reason": "too much", "debit": True}, "not enough money"),
    ],
)
async def test_bad_wallet_input_shows_the_form_again_and_changes_nothing(
    admin_client, shop, db, form, message
) -> None:
    if db.is_postgres:
        pytest.skip("form validation is the same on both databases")
    await shop.user(778, funds=500)
    path = "/users/778/debit" if form.pop("debit", False) else "/users/778/credit"
    audits, moves = await count(db, audit_log), await count(db, transfers)
    r = await post_form(admin_client, path, {"nonce": nonce(), **form})
    assert 400 <= r.status_code < 500, r.text
    assert message in r.text
    assert 'method="post" action="/users/778/credit"' in r.text  # the form again
    assert await count(db, audit_log) == audits and await count(db, transfers) == moves
    assert (await balance(db, 778)).balance == 500


async def test_unknown_user_and_order_are_404_and_change_nothing(admin_client, shop, db) -> None:
    audits = await count(db, audit_log)
    r = await post_form(
        admin_client, "/users/424242/credit", {"amount": "1", "reason": "hello", "nonce": nonce()}
    )
    assert r.status_code == 404
    assert await count(db, users, users.c.telegram_id == 424242) == 0
    r = await post_form(admin_client, "/orders/nope/refund", {"reason": "hello", "nonce": nonce()})
    assert r.status_code == 404
    r = await post_form(admin_client, "/orders/nope/cancel", {"reason": "hello", "nonce": nonce()})
    assert r.status_code == 404
    assert (await admin_client.get("/users/424242")).status_code == 404
    assert (await admin_client.get("/orders/nope")).status_code == 404
    assert await count(db, audit_log) == audits


async def test_force_cancel_refunds_once_with_audit(admin_client, shop, db) -> None:
    order = await buy(shop, 901, funds=1000, price=300)
    assert (await balance(db, 901)).available == 700
    form = {"reason": "stuck number", "nonce": nonce()}
    r1 = await post_form(admin_client, f"/orders/{order.id}/cancel", form)
    r2 = await post_form(admin_client, f"/orders/{order.id}/cancel", form)
    assert r1.status_code == r2.status_code == 303
    wallet = await balance(db, 901)
    assert (wallet.balance, wallet.held, wallet.available) == (1000, 0, 1000)
    async with db.read() as conn:
        assert await conn.scalar(select(orders.c.status).where(orders.c.id == order.id)) == "cancelled"
    [row] = await _audit(db, "order.cancel")
    assert row["actor"] == "staff:admin" and row["reason"] == "stuck number"
    page = await admin_client.get(f"/orders/{order.id}")
    assert "already cancelled" in page.text and "cancelled" in page.text


async def test_refund_completed_order_double_submit_acts_once(admin_client, shop, db) -> None:
    order = await complete(shop, await buy(shop, 902, funds=1000, price=250))
    assert (await balance(db, 902)).balance == 750
    form = {"reason": "code was wrong", "nonce": nonce()}
    assert (await post_form(admin_client, f"/orders/{order.id}/refund", form)).status_code == 303
    assert (await post_form(admin_client, f"/orders/{order.id}/refund", form)).status_code == 303
    assert (await balance(db, 902)).balance == 1000
    assert await count(db, transfers, transfers.c.code == "refund") == 1
    [row] = await _audit(db, "order.refund")
    assert row["actor"] == "staff:admin" and row["reason"] == "code was wrong"


async def test_refund_of_a_waiting_order_is_refused(admin_client, shop, db) -> None:
    order = await buy(shop, 903, funds=1000)
    r = await post_form(admin_client, f"/orders/{order.id}/refund", {"reason": "why not", "nonce": nonce()})
    assert r.status_code == 409
    assert "only completed orders" in r.text
    assert await count(db, transfers, transfers.c.code == "refund") == 0


async def test_block_and_unblock(admin_client, shop, db) -> None:
    await shop.user(904)
    r = await post_form(
        admin_client, "/users/904/block", {"blocked": "1", "reason": "fraud", "nonce": nonce()}
    )
    assert r.status_code == 303
    async with db.read() as conn:
        assert await conn.scalar(select(users.c.blocked).where(users.c.telegram_id == 904)) is True
    await post_form(admin_client, "/users/904/block", {"blocked": "1", "reason": "fraud", "nonce": nonce()})
    assert len(await _audit(db, "user.block")) == 1  # blocking twice changes nothing the second time
    await post_form(admin_client, "/users/904/block", {"blocked": "0", "reason": "cleared", "nonce": nonce()})
    assert len(await _audit(db, "user.unblock")) == 1
    r = await post_form(
        admin_client, "/users/904/block", {"blocked": "maybe", "reason": "x" * 4, "nonce": nonce()}
    )
    assert r.status_code == 400


async def test_price_override_set_and_bad_input(admin_client, shop, db) -> None:
    r = await post_form(
        admin_client,
        "/providers/prices/whatsapp",
        {"mode": "fixed", "value": "1.50", "reason": "promo", "nonce": nonce()},
    )
    assert r.status_code == 303
    async with db.read() as conn:
        row = (await conn.execute(select(price_overrides))).mappings().one()
    assert row["fixed_price"] == 150
    for form, status in [
        ({"mode": "markup", "value": "lots"}, 400),
        ({"mode": "fixed", "value": "-1"}, 400),
        ({"mode": "bogus", "value": "1"}, 400),
    ]:
        r = await post_form(
            admin_client, "/providers/prices/whatsapp", {**form, "reason": "promo", "nonce": nonce()}
        )
        assert r.status_code == status, (form, r.text)
    r = await post_form(
        admin_client,
        "/providers/prices/nosuch",
        {"mode": "markup", "value": "5", "reason": "promo", "nonce": nonce()},
    )
    assert r.status_code == 404
    async with db.read() as conn:
        assert (await conn.execute(select(price_overrides.c.fixed_price))).scalar_one() == 150
    assert len(await _audit(db, "price.set")) == 1


async def test_staff_management(admin_client, db, staff_accounts) -> None:
    r = await post_form(
        admin_client,
        "/staff",
        {"username": "bob", "role": "support", "password": "pw-long-enough", "nonce": nonce()},
    )
    assert r.status_code == 303
    r = await post_form(
        admin_client,
        "/staff",
        {"username": "bob", "role": "support", "password": "pw-long-enough", "nonce": nonce()},
    )
    assert r.status_code == 400 and "already exists" in r.text
    r = await post_form(
        admin_client,
        "/staff",
        {"username": "eve", "role": "owner", "password": "pw-long-enough", "nonce": nonce()},
    )
    assert r.status_code == 400 and "unknown role" in r.text
    r = await post_form(admin_client, "/staff/bob/tokens", {"name": "ci", "nonce": nonce()})
    assert r.status_code == 200 and "nsk_" in r.text
    r = await post_form(admin_client, "/staff/admin/role", {"role": "viewer", "nonce": nonce()})
    assert r.status_code == 400 and "last enabled admin" in r.text
    assert (await staff_accounts.find("bob")).role == "support"


async def test_audit_page_shows_who_what_why(admin_client, shop) -> None:
    await shop.user(905)
    await post_form(
        admin_client, "/users/905/credit", {"amount": "3", "reason": "birthday gift", "nonce": nonce()}
    )
    page = await admin_client.get("/audit?action=wallet.credit")
    assert page.status_code == 200
    assert "staff:admin" in page.text and "birthday gift" in page.text and "wallet.credit" in page.text


async def test_reconciliation_run_now(admin_client, shop, db) -> None:
    from core.db.tables import reconciliation_runs

    await buy(shop, 906, funds=1000)
    r = await post_form(admin_client, "/reconciliation/run", {"mode": "dry_run", "nonce": nonce()})
    assert r.status_code == 303, r.text
    async with db.read() as conn:
        run = (await conn.execute(select(reconciliation_runs))).mappings().one()
    assert run["mode"] == "dry_run"
    page = await admin_client.get("/reconciliation")
    assert f"/reconciliation/{run['id']}" in page.text
    assert (await admin_client.get(f"/reconciliation/{run['id']}")).status_code == 200
    r = await post_form(admin_client, "/reconciliation/run", {"mode": "sideways", "nonce": nonce()})
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("path", "form", "action"),
    [
        ("/providers/prices/whatsapp", {"mode": "markup", "value": "25", "reason": "promo"}, "price.set"),
        ("/users/907/block", {"blocked": "1", "reason": "fraud"}, "user.block"),
        ("/staff/viewer/tokens", {"name": "ci"}, "staff.token_create"),
        ("/reconciliation/run", {"mode": "dry_run"}, None),
    ],
)
async def test_double_submit_of_other_forms_acts_once(admin_client, shop, db, path, form, action) -> None:
    from core.db.tables import reconciliation_runs

    if db.is_postgres:
        pytest.skip("the nonce registry lives in the session store, not the database")
    await shop.user(907)
    form = {**form, "nonce": nonce()}
    first = await post_form(admin_client, path, form)
    second = await post_form(admin_client, path, form)
    assert first.status_code in (200, 303) and second.status_code == 303, (first.text, second.text)
    if action:
        assert len(await _audit(db, action)) == 1
    else:
        assert await count(db, reconciliation_runs) == 1
    assert "already submitted" in (await admin_client.get(second.headers["location"])).text


async def test_a_refused_form_can_be_fixed_and_resent_with_its_nonce(admin_client, shop, db) -> None:
    token = nonce()
    r = await post_form(
        admin_client,
        "/providers/prices/whatsapp",
        {"mode": "markup", "value": "lots", "reason": "promo", "nonce": token},
    )
    assert r.status_code == 400
    r = await post_form(
        admin_client,
        "/providers/prices/whatsapp",
        {"mode": "markup", "value": "25", "reason": "promo", "nonce": token},
    )
    assert r.status_code == 303
    assert len(await _audit(db, "price.set")) == 1
