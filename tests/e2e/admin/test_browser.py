"""A person's path through the dashboard in headless Chromium, against a real server on
loopback: log in, find a user, credit them, refund an order, see both in the audit log.
Screenshots go to artifacts/screenshots/admin/. Skipped with the reason where Chromium or
Playwright is missing."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from argon2 import PasswordHasher

from admin.app import create_app
from core import ledger
from core.clock import FakeClock
from core.db.engine import Database
from core.db.tables import metadata
from core.staff import StaffAccounts
from core.wallets import Wallets
from tests.integration.orders_support import ScriptedProvider, Shop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[3] / "artifacts" / "screenshots" / "admin"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_log_in_credit_refund_and_audit(tmp_path) -> None:  # noqa: ANN001
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is missing at {CHROMIUM} (Debian package 'chromium')")
    import uvicorn

    clock = FakeClock()
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/browser.db")
    staff = StaffAccounts(db, clock, PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    shop = Shop(db, clock, {"alpha": ScriptedProvider("alpha", clock)}, ADMIN_SECRET_KEY="k" * 32)

    async def seed() -> str:
        async with db.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await ledger.ensure_system_accounts(conn, clock.now())
        ledger.forget_system_accounts()
        await shop.setup_catalog()
        user = await shop.user(4242, funds=2000)
        quote = await shop.quote(user.id, price=300)
        order = await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key="b1")
        shop.providers["alpha"].deliver(order.activation_id, "135790")
        await shop.orders.check_now(order.id)
        await staff.create("alice", "admin", "browser password")
        await db.dispose()
        return order.id

    order_id = asyncio.run(seed())
    ledger.forget_system_accounts()
    core = SimpleNamespace(settings=shop.settings, db=db, clock=clock, board=None, providers=shop.providers,
                           wallets=Wallets(db, clock, "USD"), orders=shop.orders)
    app = create_app(core, staff_accounts=staff, secret_key=secrets.token_hex(32))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base + "/")
            assert page.url.startswith(base + "/login")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "browser password")
            page.click("button[type=submit]")
            page.wait_for_url(base + "/")
            assert "Orders today" in page.content()
            page.screenshot(path=str(SHOTS / "1-overview.png"), full_page=True)

            page.click("text=Users")
            page.fill("input[name=q]", "4242")
            page.click("form.filters button[type=submit]")
            page.click("a[href='/users/4242']")
            page.screenshot(path=str(SHOTS / "2-user.png"), full_page=True)
            credit = page.locator("form[action='/users/4242/credit']")
            credit.locator("input[name=amount]").fill("5.00")
            credit.locator("input[name=reason]").fill("browser test goodwill")
            credit.locator("button[type=submit]").click()
            page.wait_for_selector(".flash")
            assert "Credited $5.00" in page.inner_text(".flash")
            assert page.inner_text("#balance") == "$22.00"  # 20.00 − 3.00 captured + 5.00
            page.screenshot(path=str(SHOTS / "3-credited.png"), full_page=True)

            page.click(f"a[href='/orders/{order_id}']")
            refund = page.locator(f"form[action='/orders/{order_id}/refund']")
            refund.locator("input[name=reason]").fill("code did not work")
            refund.locator("button[type=submit]").click()
            page.wait_for_selector(".flash")
            assert "Refunded $3.00" in page.inner_text(".flash")
            page.screenshot(path=str(SHOTS / "4-refunded.png"), full_page=True)

            page.click("text=Audit")
            text = page.inner_text("table")
            assert "wallet.credit" in text and "order.refund" in text
            assert "browser test goodwill" in text and "code did not work" in text and "staff:alice" in text
            page.screenshot(path=str(SHOTS / "5-audit.png"), full_page=True)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
