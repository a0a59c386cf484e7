"""The dashboard answers only the names it is served under (DNS rebinding): a page whose
name was rebound to 127.0.0.1 gets 421, not the login form or the API."""

from __future__ import annotations

from types import SimpleNamespace

from litestar import Litestar
from litestar.stores.memory import MemoryStore
from litestar.testing import AsyncTestClient

from admin.app import create_app


async def test_a_rebound_host_name_gets_421(app: Litestar) -> None:
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        for path in ("/login", "/healthz", "/api/orders", "/static/app.css"):
            r = await client.get(path, headers={"Host": "rebound.example:8000"})
            assert r.status_code == 421, path
            assert "not served here" in r.text
        for host in ("127.0.0.1:8000", "localhost:8000", "localhost", "[::1]:8000"):
            r = await client.get("/login", headers={"Host": host})
            assert r.status_code == 200, host


async def test_allowed_hosts_names_the_public_name(core: SimpleNamespace) -> None:
    settings = core.settings.model_copy(update={"ALLOWED_HOSTS": ("shop.example",)})
    app = create_app(
        SimpleNamespace(**{**vars(core), "settings": settings}), store=MemoryStore(), secret_key="s" * 64
    )
    app.on_shutdown.append(core.db.dispose)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        assert (await client.get("/login", headers={"Host": "shop.example"})).status_code == 200
        assert (await client.get("/login", headers={"Host": "Shop.Example:443"})).status_code == 200
        r = await client.get("/login", headers={"Host": "other.example"})
        assert r.status_code == 421
