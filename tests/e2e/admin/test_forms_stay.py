"""A form with bad input stays on its page: status 400, the reason next to the form that
failed, and what was typed still in its fields (never a password), so staff fix one field
instead of typing everything again."""

from __future__ import annotations

import re

import pytest

from core.db.tables import audit_log, transfers

from .conftest import balance, count, login, nonce, post_form


@pytest.fixture
async def admin_client(client, staff):
    await login(client, "admin")
    return client


def _form(html: str, form_id: str) -> str:
    match = re.search(rf'<form[^>]*id="{form_id}".*?</form>', html, re.S)
    assert match, f"no form {form_id} on the page"
    return match.group(0)


async def test_bad_credit_keeps_what_was_typed_in_that_form(admin_client, shop, db) -> None:
    if db.is_postgres:
        pytest.skip("rendering is the same on both databases")
    await shop.user(881, funds=500)
    moves = await count(db, transfers)
    r = await post_form(
        admin_client,
        "/users/881/credit",
        {"amount": "12.345", "reason": "goodwill for the outage", "nonce": nonce()},
    )
    assert r.status_code == 400
    credit, debit = _form(r.text, "credit-form"), _form(r.text, "debit-form")
    assert 'value="12.345"' in credit and 'value="goodwill for the outage"' in credit
    assert "decimal places" in credit and 'role="alert"' in credit  # the reason, next to the form
    assert 'value="12.345"' not in debit and "goodwill" not in debit  # the other form stays empty
    assert await count(db, transfers) == moves and (await balance(db, 881)).balance == 500


async def test_debit_beyond_the_balance_stays_on_the_user_page(admin_client, shop, db) -> None:
    if db.is_postgres:
        pytest.skip("rendering is the same on both databases")
    await shop.user(882, funds=500)
    r = await post_form(
        admin_client, "/users/882/debit", {"amount": "9.99", "reason": "chargeback", "nonce": nonce()}
    )
    assert r.status_code == 409 and "<h1>User 882" in r.text  # refused, the page stays
    debit = _form(r.text, "debit-form")
    assert 'value="9.99"' in debit and 'value="chargeback"' in debit and "not enough money" in debit
    assert (await balance(db, 882)).balance == 500


async def test_block_without_a_reason_keeps_the_page(admin_client, shop, db) -> None:
    if db.is_postgres:
        pytest.skip("rendering is the same on both databases")
    await shop.user(883)
    audits = await count(db, audit_log)
    r = await post_form(admin_client, "/users/883/block", {"blocked": "1", "reason": "x", "nonce": nonce()})
    assert r.status_code == 400
    block = _form(r.text, "block-form")
    assert 'value="x"' in block and 'role="alert"' in block
    assert await count(db, audit_log) == audits


async def test_bad_new_staff_keeps_name_and_role_never_the_password(admin_client, db, staff_accounts) -> None:
    if db.is_postgres:
        pytest.skip("rendering is the same on both databases")
    r = await post_form(
        admin_client, "/staff", {"username": "bob", "role": "support", "password": "short", "nonce": nonce()}
    )
    assert r.status_code == 400 and "<h1>Staff</h1>" in r.text
    added = _form(r.text, "add-staff")
    assert 'value="bob"' in added and "<option selected>support</option>" in added
    assert 'role="alert"' in added and "at least" in added and 'value="short"' not in r.text
    assert await staff_accounts.find("bob") is None
