"""The dashboard's security items: input that used to crash, CSRF bound to the session and
Origin, security headers, request limits, text that must not be stored, the absolute session
age and the support credit limit."""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.stores.memory import MemoryStore
from litestar.testing import AsyncTestClient

from admin.app import create_app
from admin.queries import encode_cursor
from admin.throttle import ThrottlePolicy
from core.db.tables import audit_log, transfers
from core.staff import StaffAccounts

from .conftest import balance, buy, count, csrf, login, nonce, post_form

HUGE = 2**64 + 5
NOT_ASCII = ["²", "١", "１２"]
FORM = {"content-type": "application/x-www-form-urlencoded"}


def credit(amount: str) -> dict[str, str]:
    return {"amount": amount, "reason": "goodwill", "nonce": nonce()}


@pytest.fixture
async def world(shop):
    await buy(shop, 555, funds=1000)
    return 555


# --- item 5: numbers that crashed ------------------------------------------------------------

USER_FILTERS = [
    "/orders?user={v}",
    "/ledger?user={v}",
    "/ledger.csv?user={v}",
    "/api/orders?user={v}",
    "/api/transfers?user={v}",
]


@pytest.mark.parametrize("value", [*NOT_ASCII, str(HUGE), "-" + str(HUGE), "3000000000"])
async def test_user_filters_refuse_odd_numbers_with_a_reason(client, staff, world, value) -> None:
    await login(client, "viewer")
    for template in USER_FILTERS:
        r = await client.get(template.format(v=value))
        assert r.status_code == 400, (template, value, r.status_code, r.text[:200])
        assert "no user" in r.text
    for path in (f"/users?q={value}", f"/api/users?q={value}"):
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text[:200])  # a search that finds nobody


async def test_cursors_with_ids_beyond_the_column_are_refused(client, staff, world) -> None:
    await login(client, "viewer")
    when = datetime(2026, 1, 1, tzinfo=UTC)
    for row_id in (HUGE, 2**63 - 1, 2**31, "²", "1\x00"):
        cursor = encode_cursor(when, row_id)
        for path in ("/audit", "/api/audit"):
            r = await client.get(path, params={"cursor": cursor})
            assert r.status_code == 400, (path, row_id, r.status_code, r.text[:200])
            assert "cursor" in r.text
        for path in ("/orders", "/ledger", "/api/orders", "/api/transfers"):
            r = await client.get(path, params={"cursor": cursor})
            assert r.status_code in (200, 400), (path, row_id, r.status_code, r.text[:200])


async def test_days_are_ascii_and_leave_room_for_the_next_day(client, staff, world) -> None:
    await login(client, "viewer")
    for day in ("9999-12-31", "０２０２６-01-01", "2026-01-0١", "0001-01-01"):
        for path in ("/orders", "/ledger", "/api/orders", "/api/transfers"):
            r = await client.get(path, params={"date_to": day})
            assert r.status_code == 400, (path, day, r.status_code, r.text[:200])


async def test_path_ids_beyond_the_column_are_refused(client, staff) -> None:
    await login(client, "admin")
    r = await client.get(f"/reconciliation/{2**40}")
    assert 400 <= r.status_code < 500
    r = await post_form(client, f"/staff/tokens/{2**40}/revoke", {"nonce": nonce()})
    assert 400 <= r.status_code < 500


# --- item 6: CSRF bound to the session, Origin checked --------------------------------------


async def test_a_token_from_before_login_is_worthless_after_it(client, staff, world, db) -> None:
    before = await csrf(client)
    assert (await login(client, "support")).status_code == 303
    after = await csrf(client)
    assert after != before
    form = {"amount": "1.00", "reason": "goodwill", "nonce": nonce()}
    r = await client.post("/users/555/credit", data={**form, "_csrf_token": before}, follow_redirects=False)
    assert r.status_code == 403
    assert (await balance(db, 555)).balance == 1000
    r = await client.post("/users/555/credit", data={**form, "_csrf_token": after}, follow_redirects=False)
    assert r.status_code == 303


async def test_a_token_from_another_session_is_refused(app: Litestar, client, staff, world, db) -> None:
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as other:
        await login(other, "viewer")
        foreign = await csrf(other)
    await login(client, "support")
    r = await client.post(
        "/users/555/credit",
        data={"amount": "1.00", "reason": "goodwill", "nonce": nonce(), "_csrf_token": foreign},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert (await balance(db, 555)).balance == 1000


@pytest.mark.parametrize(
    "header",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Origin": "http://testserver.local.evil.example"},
    ],
)
async def test_unsafe_requests_from_another_origin_are_refused(client, staff, world, db, header) -> None:
    await login(client, "support")
    token = await csrf(client)
    form = {"amount": "1.00", "reason": "goodwill", "nonce": nonce(), "_csrf_token": token}
    r = await client.post("/users/555/credit", data=form, headers=header, follow_redirects=False)
    assert r.status_code == 403
    assert "cross-site request refused" in r.text
    assert (await balance(db, 555)).balance == 1000
    r = await client.post(
        "/users/555/credit", data=form, headers={"Origin": "http://testserver.local"}, follow_redirects=False
    )
    assert r.status_code == 303


# --- item 7: headers -------------------------------------------------------------------------


async def test_pages_carry_security_headers_and_the_new_token_page_is_not_cached(client, staff) -> None:
    await login(client, "admin")
    r = await post_form(client, "/staff/viewer/tokens", {"name": "ci", "nonce": nonce()})
    assert r.status_code == 200 and "nsk_" in r.text
    for response in (r, await client.get("/"), await client.get("/login"), await client.get("/api/overview")):
        h = response.headers
        assert h["cache-control"] == "no-store"
        assert h["x-frame-options"] == "DENY"
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "same-origin"
        csp = h["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp and "script-src" not in csp
    static = await client.get("/static/admin.css")
    assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", "")


def test_templates_have_nothing_inline_that_the_csp_would_block() -> None:
    templates = Path(__file__).parents[3] / "admin" / "templates"
    for path in templates.glob("*.html"):
        text = path.read_text().lower()
        for needle in (
            "<script",
            "style=",
            "<style",
            "javascript:",
            " onclick=",
            " onsubmit=",
            "http://",
            "https://",
        ):
            assert needle not in text, (path.name, needle)


async def test_api_docs_page_is_off_unless_asked_for(core, clock, hasher, staff, staff_accounts) -> None:
    token = await staff_accounts.create_token("viewer")
    auth = {"Authorization": f"Bearer {token}"}
    for enabled, expected in ((False, 404), (True, 200)):
        settings = core.settings.model_copy(update={"ADMIN_API_DOCS": enabled})
        app = create_app(
            type(core)(**{**core.__dict__, "settings": settings}),
            store=MemoryStore(),
            staff_accounts=StaffAccounts(core.db, clock, hasher),
            clock=clock,
            secret_key=secrets.token_hex(32),
        )
        app.on_shutdown.append(core.db.dispose)  # its connections belong to this app's loop
        async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
            assert (await c.get("/api/schema/swagger", headers=auth)).status_code == expected
            assert (await c.get("/api/schema/openapi.json", headers=auth)).status_code == 200


# --- item 8: request limits ------------------------------------------------------------------


@pytest.fixture
def count_form_parsing(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from litestar.connection import Request

    calls: list[int] = []
    original = Request.form

    async def counting(self, *args, **kwargs):
        calls.append(1)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Request, "form", counting)
    return calls


async def test_a_huge_anonymous_form_is_refused_before_parsing(client, count_form_parsing) -> None:
    body = b"&".join(b"f%d=1" % i for i in range(2_000_000))[: 6 * 1024 * 1024]
    r = await client.post("/login", content=body, headers=FORM)
    assert r.status_code == 413
    assert "larger than" in r.text
    assert count_form_parsing == []


async def test_a_form_with_too_many_fields_is_refused_before_parsing(client, count_form_parsing) -> None:
    body = b"&".join(b"f%d=1" % i for i in range(5000))  # small, but thousands of fields
    r = await client.post("/login", content=body, headers=FORM)
    assert r.status_code == 413
    assert "fields" in r.text
    assert count_form_parsing == []
    r = await client.post(
        "/api/users/555/credit", content=b"x" * (200 * 1024), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["detail"].startswith("the request body is larger")


# --- item 11: text that must not be stored ---------------------------------------------------

BAD_REASONS = [
    "refund\x00please",
    "refund \u202egnp.exe",
    "ok \u2066isolate\u2069",
    "rlm\u200f here",
    "arabic\u061cmark",
    "bell\x07ring",
]


@pytest.mark.parametrize("reason", BAD_REASONS)
async def test_reasons_with_nul_or_bidi_controls_are_refused(client, staff, world, db, reason) -> None:
    await login(client, "support")
    r = await post_form(client, "/users/555/credit", {"amount": "1.00", "reason": reason, "nonce": nonce()})
    assert r.status_code == 400, r.text[:300]
    token = await csrf(client)
    r = await client.post(
        "/api/users/555/credit",
        headers={"X-CSRFToken": token},
        content=json.dumps({"amount": "1.00", "reason": reason, "idempotency_key": "k1"}),
        follow_redirects=False,
    )
    assert r.status_code == 400, r.text[:300]
    assert (await balance(db, 555)).balance == 1000
    assert await count(db, audit_log, audit_log.c.action == "wallet.credit") == 0


async def test_api_idempotency_keys_with_controls_are_refused(client, staff, world, db) -> None:
    await login(client, "support")
    token = await csrf(client)
    r = await client.post(
        "/api/users/555/credit",
        headers={"X-CSRFToken": token},
        json={"amount": "1.00", "reason": "goodwill", "idempotency_key": "k\u202e1"},
    )
    assert r.status_code == 400 and "direction-control" in r.json()["detail"]
    assert (await balance(db, 555)).balance == 1000


async def test_token_names_with_controls_are_refused(client, staff) -> None:
    await login(client, "admin")
    r = await post_form(client, "/staff/viewer/tokens", {"name": "ci\u202e", "nonce": nonce()})
    assert r.status_code == 400 and "direction-control" in r.text


async def test_a_nul_in_the_login_form_or_a_query_is_a_400_not_a_500(client, staff) -> None:
    r = await client.get("/login", params={"next": "/\x00"})
    assert r.status_code == 400
    token = await csrf(client)
    form = {"username": "ad\x00min", "password": "x" * 10, "_csrf_token": token}
    r = await client.post("/login", data=form)
    assert r.status_code == 400


# --- item 13: absolute session age -----------------------------------------------------------


def _app_with_store(core, clock, hasher, store):
    return create_app(
        core,
        store=store,
        staff_accounts=StaffAccounts(core.db, clock, hasher),
        clock=clock,
        secret_key=secrets.token_hex(32),
        throttle_policy=ThrottlePolicy(),
    )


@pytest.mark.parametrize("store_kind", ["memory", "redis"])
async def test_a_busy_session_still_ends_seven_days_after_login(
    core, clock, hasher, staff, db, store_kind
) -> None:
    if store_kind == "redis":
        url = os.environ.get("NUMBERSHOP_TEST_REDIS_URL")
        if not url:
            pytest.skip("Redis variant skipped: set NUMBERSHOP_TEST_REDIS_URL to run it")
        if db.is_postgres:
            pytest.skip("about the session store, not the database")
        from litestar.stores.redis import RedisStore

        store = RedisStore.with_client(url=url, namespace=f"nstest-{secrets.token_hex(4)}")
    else:
        store = MemoryStore()
    app = _app_with_store(core, clock, hasher, store)
    app.on_shutdown.append(core.db.dispose)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        assert (await login(c, "viewer")).status_code == 303
        for _ in range(7):
            assert (await c.get("/users", follow_redirects=False)).status_code == 200
            clock.advance(days=1, seconds=-60)  # busy every day: the idle timeout never runs out
        clock.advance(seconds=7 * 60 + 1)  # now just past seven days after login
        r = await c.get("/users", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        assert (await c.get("/api/overview")).status_code == 401
        assert (await login(c, "viewer")).status_code == 303  # a new login starts a new week
        assert (await c.get("/users", follow_redirects=False)).status_code == 200
    if store_kind == "redis":
        await store.delete_all()


# --- item 14: support credit limit -----------------------------------------------------------


async def test_support_may_credit_up_to_the_limit_and_only_an_admin_beyond(client, staff, world, db) -> None:
    assert (await balance(db, 555)).balance == 1000
    await login(client, "support")
    r = await post_form(client, "/users/555/credit", credit("100.01"))
    assert r.status_code == 403 and "at most $100.00" in r.text, r.text[:300]
    token = await csrf(client)
    r = await client.post(
        "/api/users/555/credit",
        headers={"X-CSRFToken": token},
        json={"amount": "100000000000.00", "reason": "goodwill", "idempotency_key": "big"},
    )
    assert r.status_code == 403 and "ask an admin" in r.json()["detail"]
    assert (await balance(db, 555)).balance == 1000
    assert await count(db, transfers, transfers.c.code == "adjustment") == 0
    r = await post_form(client, "/users/555/credit", credit("100.00"))
    assert r.status_code == 303
    r = await post_form(client, "/users/555/debit", {"amount": "100.00", "reason": "undo", "nonce": nonce()})
    assert r.status_code == 303  # the limit is on credits
    await post_form(client, "/logout", {})
    await login(client, "admin")
    r = await post_form(client, "/users/555/credit", credit("500.00"))
    assert r.status_code == 303
    assert (await balance(db, 555)).balance == 1000 + 50000
