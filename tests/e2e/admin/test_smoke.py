from __future__ import annotations

from .conftest import login


async def test_login_and_every_page_renders(client, staff) -> None:
    r = await client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    r = await login(client, "admin")
    assert r.status_code == 303, r.text
    for path in [
        "/",
        "/users",
        "/orders",
        "/ledger",
        "/providers",
        "/reconciliation",
        "/audit",
        "/staff",
        "/ledger.csv",
        "/metrics",
        "/api/overview",
        "/api/orders",
        "/api/schema/openapi.json",
    ]:
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text[:2000])
