"""``numbershop run``'s dashboard: it does not trust X-Forwarded-For unless asked, so a forged
header from any local client cannot name a fresh address to the login throttle."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from core.app import build_core
from core.clock import FakeClock
from core.config import Settings
from core.db.engine import Database
from core.providers.simulator import SimulatorProvider
from numbershop.cli import build_parser
from numbershop.commands.run import DashboardComponent


def test_run_trusts_no_proxy_headers_by_default() -> None:
    args = build_parser().parse_args(["run"])
    assert (args.proxy_headers, args.forwarded_allow_ips, args.secure_cookies) == (False, "127.0.0.1", False)
    args = build_parser().parse_args(
        ["run", "--proxy-headers", "--forwarded-allow-ips", "10.0.0.1", "--secure-cookies"]
    )
    assert (args.proxy_headers, args.forwarded_allow_ips, args.secure_cookies) == (True, "10.0.0.1", True)


@pytest.mark.parametrize("trust", [False, True])
async def test_the_dashboard_sees_the_real_peer_unless_told_to_trust_a_proxy(
    db: Database, clock: FakeClock, tmp_path, monkeypatch, trust: bool
) -> None:
    if not db.is_sqlite:
        pytest.skip("the proxy setting does not depend on the database")
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None, DATABASE_URL=db.url, PROVIDERS="simulator", ADMIN_SECRET_KEY="s" * 32)
    core = build_core(settings, clock=clock, providers={"simulator": SimulatorProvider(clock=clock)}, db=db)
    sock = socket.create_server(("127.0.0.1", 0))
    dashboard = DashboardComponent(
        core, sock, proxy_headers=trust, forwarded_allow_ips="127.0.0.1", secure_cookies=True
    )
    await dashboard.start()
    try:
        seen: list[str] = []
        app = dashboard.server.config.loaded_app
        inner = app.app if type(app).__name__ == "ProxyHeadersMiddleware" else app

        async def spy(scope, receive, send):
            if scope["type"] == "http":
                seen.append(scope["client"][0])
            await inner(scope, receive, send)

        if inner is app:
            dashboard.server.config.loaded_app = spy
        else:
            app.app = spy
        port = sock.getsockname()[1]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Forwarded-For": "203.0.113.9"}) as r,
        ):
            assert r.status == 200
        assert seen == (["203.0.113.9"] if trust else ["127.0.0.1"])
    finally:
        await dashboard.stop()
        sock.close()
