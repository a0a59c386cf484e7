"""The sandbox's simulated Crypto Pay server, driven by the shop's real service over HTTP.

The invoice page's Pay action either delivers a signed ``invoice_paid`` webhook (here to a
receiver that hands it to ``CryptoPay.handle_webhook``, as the dashboard does) or drops it,
and then the poll credits the payment. Each invoice is credited once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from core.config import load_settings
from core.cryptopay import CryptoPay
from core.wallets import Wallets
from numbershop.cryptopay_sim import PREFIX, SANDBOX_CRYPTOPAY_TOKEN, CryptoPaySim

BUYER = 1001


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def world(db, clock) -> AsyncIterator[tuple[CryptoPaySim, CryptoPay, list[tuple[int, str]]]]:
    sim = CryptoPaySim(clock, "http://127.0.0.1")
    sim_app = web.Application()
    sim.routes(sim_app)
    sim_runner, base = await _serve(sim_app)
    sim.base_url = base  # the pay links point at where it listens

    settings = load_settings(CRYPTOPAY_TOKEN=SANDBOX_CRYPTOPAY_TOKEN, CRYPTOPAY_URL=base + PREFIX)
    service = CryptoPay(db, clock, settings)
    answers: list[tuple[int, str]] = []

    async def receive(request: web.Request) -> web.Response:
        answer = await service.handle_webhook(
            await request.read(), request.headers.get("crypto-pay-api-signature")
        )
        answers.append((answer.status, answer.detail))
        return web.json_response({"detail": answer.detail}, status=answer.status)

    hook_app = web.Application()
    hook_app.router.add_post("/webhooks/cryptopay", receive)
    hook_runner, hook_base = await _serve(hook_app)
    sim.webhook_url = hook_base + "/webhooks/cryptopay"
    try:
        yield sim, service, answers
    finally:
        await service.aclose()
        await hook_runner.cleanup()
        await sim_runner.cleanup()


async def _pay(sim: CryptoPaySim, pay_url: str, webhook: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(pay_url) as page:
            assert page.status == 200
            assert "Pay, but lose the webhook" in await page.text()
        async with http.post(pay_url + "/pay", data={"webhook": webhook, "asset": "TON"}) as done:
            assert done.status == 200
            return await done.text()


async def test_pay_with_webhook_credits_once(world, db, clock) -> None:
    sim, service, answers = world
    created = await service.create_invoice(BUYER, 500, description="Top up $5.00")
    assert created.pay_url.startswith(sim.base_url + PREFIX + "/invoice/")
    page = await _pay(sim, created.pay_url, "deliver")
    assert "Webhook delivered: HTTP 200" in page
    assert answers == [(200, "credited")]
    assert (await service.poll()).credited == 0  # already credited: the poll adds nothing
    assert (await Wallets(db, clock).show(BUYER)).balance == 500
    assert sim.invoices[created.invoice_id]["paid_asset"] == "TON"


async def test_pay_without_webhook_is_found_by_the_poll(world, db, clock) -> None:
    sim, service, answers = world
    created = await service.create_invoice(BUYER, 250, description="Top up $2.50")
    page = await _pay(sim, created.pay_url, "drop")
    assert "webhook dropped" in page and answers == []
    assert (await Wallets(db, clock).show(BUYER)).balance == 0
    assert (await service.poll()).credited == 1
    assert (await service.poll()).credited == 0
    assert (await Wallets(db, clock).show(BUYER)).balance == 250


async def test_the_api_wants_the_token(world) -> None:
    sim, _service, _answers = world
    async with (
        aiohttp.ClientSession() as http,
        http.post(sim.base_url + PREFIX + "/api/getMe", headers={"Crypto-Pay-API-Token": "x"}) as r,
    ):
        assert r.status == 401 and (await r.json())["error"]["name"] == "UNAUTHORIZED"
