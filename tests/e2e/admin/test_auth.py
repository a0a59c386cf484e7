"""Logging in: wrong passwords, throttling, session rotation, cookies, logout, tokens."""

from __future__ import annotations

from litestar import Litestar

from admin.sessions import SESSION_COOKIE

from .conftest import PASSWORD, csrf, login, post_form


async def test_unauthenticated_pages_redirect_and_api_gets_401(client) -> None:
    for path in ["/", "/users", "/orders/abc", "/staff", "/ledger.csv"]:
        r = await client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next=")
    for path in ["/api/users", "/api/orders", "/metrics", "/api/schema/openapi.json"]:
        r = await client.get(path)
        assert r.status_code == 401, path
        assert r.headers.get("www-authenticate") == "Bearer"
    assert (await client.get("/healthz")).text == "ok"
    assert (await client.get("/readyz")).status_code == 200


async def test_wrong_password_is_refused_without_a_session(client, staff) -> None:
    r = await login(client, "support", "not the password")
    assert r.status_code == 401
    assert "Wrong username or password" in r.text
    assert not client.cookies.get(SESSION_COOKIE) or client.cookies.get(SESSION_COOKIE) == "null"
    r = await login(client, "nobody", PASSWORD)
    assert r.status_code == 401
    assert (await client.get("/", follow_redirects=False)).status_code == 303


async def test_login_throttled_after_repeated_failures(client, staff, clock) -> None:
    for _ in range(3):  # policy in conftest: 3 per account+IP, lockout 300 s
        assert (await login(client, "support", "wrong")).status_code == 401
    r = await login(client, "support", PASSWORD)  # even the right password waits
    assert r.status_code == 429
    assert "Too many failed logins" in r.text
    assert (await client.get("/", follow_redirects=False)).status_code == 303
    # Another account from the same address is not locked by this one's failures.
    assert (await login(client, "viewer", PASSWORD)).status_code == 303
    await post_form(client, "/logout", {})
    clock.advance(299)
    assert (await login(client, "support", PASSWORD)).status_code == 429
    clock.advance(2)
    assert (await login(client, "support", PASSWORD)).status_code == 303
    assert (await client.get("/")).status_code == 200


async def test_throttle_per_ip_across_usernames(app: Litestar, client, staff) -> None:
    for i in range(10):
        assert (await login(client, f"guess{i}", "x")).status_code == 401
    assert (await login(client, "admin", PASSWORD)).status_code == 429


async def test_session_id_rotates_at_login_and_cookies_are_safe(client, staff) -> None:
    await csrf(client)
    # A pre-login session (e.g. planted by an attacker) must not survive the login.
    client.cookies.set(SESSION_COOKIE, "a" * 64)
    r = await login(client, "viewer")
    assert r.status_code == 303
    set_cookie = [
        v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE + "=")
    ]
    assert set_cookie, r.headers
    new_id = set_cookie[-1].split(";")[0].split("=", 1)[1]
    assert new_id not in ("a" * 64, "null") and len(new_id) == 64
    lowered = set_cookie[-1].lower()
    assert "httponly" in lowered and "samesite=lax" in lowered
    csrf_cookie = [v for k, v in (await client.get("/login?x=1")).headers.multi_items() if k == "set-cookie"]
    assert all("httponly" in c.lower() for c in csrf_cookie)
    assert (await client.get("/")).status_code == 200


async def test_old_session_id_is_dead_after_login(app: Litestar, staff) -> None:
    from litestar.testing import AsyncTestClient

    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        await login(c, "viewer")
        first = c.cookies.get(SESSION_COOKIE)
        await post_form(c, "/logout", {})
        assert (await c.get("/", follow_redirects=False)).status_code == 303
        c.cookies.set(SESSION_COOKIE, first)  # replaying the logged-out id does not log in
        assert (await c.get("/", follow_redirects=False)).status_code == 303


async def test_password_change_and_disable_end_sessions(client, staff, staff_accounts) -> None:
    await login(client, "support")
    assert (await client.get("/users")).status_code == 200
    await staff_accounts.set_password("support", "a brand new password")
    assert (await client.get("/users", follow_redirects=False)).status_code == 303
    await login(client, "support", "a brand new password")
    assert (await client.get("/users")).status_code == 200
    await staff_accounts.set_disabled("support", True, actor="staff:admin")
    assert (await client.get("/users", follow_redirects=False)).status_code == 303


async def test_login_redirect_goes_only_to_local_paths(client, staff) -> None:
    r = await post_form(
        client, "/login", {"username": "viewer", "password": PASSWORD, "next": "//evil.example/x"}
    )
    assert r.headers["location"] == "/"
    await post_form(client, "/logout", {})
    r = await post_form(
        client, "/login", {"username": "viewer", "password": PASSWORD, "next": "/orders?status=waiting"}
    )
    assert r.headers["location"] == "/orders?status=waiting"


async def test_api_token_auth(client, staff, staff_accounts) -> None:
    token = await staff_accounts.create_token("viewer", "script")
    r = await client.get("/api/users", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json() == []
    assert (await client.get("/api/users", headers={"Authorization": "Bearer nsk_wrong"})).status_code == 401
    assert (await client.get("/api/users", headers={"Authorization": f"Basic {token}"})).status_code == 401
    await staff_accounts.set_disabled("viewer", True, actor="staff:admin")
    assert (await client.get("/api/users", headers={"Authorization": f"Bearer {token}"})).status_code == 401


def test_every_route_declares_a_role_or_is_public(app: Litestar) -> None:
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if set(getattr(handler, "http_methods", ())) == {"OPTIONS"}:
                continue  # Litestar's automatic CORS preflight answer
            opt = handler.opt
            assert opt.get("public") or opt.get("role") in ("viewer", "support", "admin"), route.path
            if opt.get("public"):
                assert route.path in (
                    "/login",
                    "/healthz",
                    "/readyz",
                    "/webhooks/textverified",
                    "/webhooks/cryptopay",  # signed by Crypto Pay, checked over the raw body
                ) or route.path.startswith("/static"), route.path
