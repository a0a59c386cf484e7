"""The sandbox in a browser's world: it answers only its own names, refuses what a browser
marks as cross-site, and hands no secret to a page (the dashboard password is printed in
the terminal only)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from core.app import build_core
from core.clock import FakeClock
from core.config import Settings
from core.db.engine import Database
from core.hosts import HostPolicy
from core.providers.simulator import SimulatorProvider
from numbershop import sandbox as sb
from numbershop.commands.run import DashboardComponent
from numbershop.emulator import Emulator
from numbershop.sandbox.panel import DeliveryPanel
from numbershop.sandbox.web import make_sandbox_app


async def _serve(
    db: Database, clock: FakeClock, config: dict[str, Any], hosts: HostPolicy | None = None
) -> tuple[TestServer, Any]:
    sim = SimulatorProvider(seed=3, clock=clock)
    settings = Settings(_env_file=None, DATABASE_URL=db.url, PROVIDERS="simulator")
    core = build_core(settings, clock=clock, providers={"simulator": sim}, db=db)
    emulator = Emulator(auto_register=False)
    bot = emulator.add_bot(sb.SANDBOX_TOKEN, username=sb.SANDBOX_BOT_USERNAME)
    app = make_sandbox_app(emulator, bot, DeliveryPanel(sim, core), config, hosts=hosts)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, core


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_the_page_is_never_given_the_dashboard_password(
    db: Database, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    config: dict[str, Any] = {"dashboard": None}
    server, core = await _serve(db, clock, config)
    try:
        with socket.socket() as unused:
            dashboard = DashboardComponent(core, unused, sandbox=True, page_config=config)
            note = await dashboard._login_note("http://127.0.0.1:8000/")
        password = note.rsplit("/ ", 1)[1].rstrip(")")
        assert note.startswith(" (log in as sandbox / ") and len(password) >= 12

        async with http.get(server.make_url("/sandbox/api/config")) as r:
            assert r.status == 200
            text = await r.text()
        assert password not in text
        assert (await r.json())["result"]["dashboard"] == {
            "url": "http://127.0.0.1:8000/",
            "username": "sandbox",
        }
    finally:
        await server.close()


async def test_the_sandbox_answers_only_its_own_host_names(
    db: Database, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    server, _ = await _serve(
        db, clock, {"dashboard": None}, hosts=HostPolicy(("shop.example",), bind_host="127.0.0.1")
    )
    try:
        for path in ("/", "/sandbox/api/config", "/control/bots"):
            async with http.get(server.make_url(path), headers={"Host": "rebound.example"}) as r:
                assert r.status == 421, path
                assert "not served here" in await r.text()
            for host in ("shop.example", "shop.example:8088", f"127.0.0.1:{server.port}", "localhost"):
                async with http.get(server.make_url(path), headers={"Host": host}) as r:
                    assert r.status == 200, (path, host)
    finally:
        await server.close()


async def test_cross_site_writes_to_the_panel_are_refused(
    db: Database, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    server, _ = await _serve(db, clock, {"dashboard": None})
    try:
        deliver = server.make_url("/sandbox/api/activations/nope/deliver")
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
            async with http.post(deliver, json={}, headers=headers) as r:
                assert r.status == 403, headers
        async with http.post(deliver, json={}, headers={"Sec-Fetch-Site": "same-origin"}) as r:
            assert r.status == 409  # reached the panel: no such activation
        async with http.post(
            deliver, data='{"code": NaN}', headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400
    finally:
        await server.close()
