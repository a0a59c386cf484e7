"""A person in headless Chromium, on a 390 px phone-sized window, tops up with crypto in the
sandbox: Balance → Pay with crypto → $5.00 → the pay link opens the simulated Crypto Pay page
→ Pay → the signed webhook reaches the dashboard → the chat says the money arrived, once.
Screenshots go to artifacts/screenshots/crypto/. Skipped where Chromium or Playwright is
missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.sandbox.browser import PHONE, WAIT_MS, sandbox_chat
from tests.e2e.sandbox.conftest import REPO

SHOTS = REPO / "artifacts" / "screenshots" / "crypto"

pytestmark = pytest.mark.slow


def test_pay_a_crypto_invoice_in_the_sandbox(tmp_path: Path, processes) -> None:
    with sandbox_chat(tmp_path, processes, SHOTS) as chat:
        page, expect, button, bot_says = chat.page, chat.expect, chat.button, chat.bot_says
        context, bubbles, errors = page.context, page.get_by_test_id("bubble"), chat.errors
        dashboard, password = chat.shop.wait_for(
            r"dashboard +(http://\S+?)/? \(log in as sandbox / (\S+)\)"
        ).groups()
        chat.start()
        button("Balance & top up").click()
        bot_says("Your balance")
        expect(button("Pay with crypto")).to_be_visible()
        page.screenshot(path=str(SHOTS / "1-top-up-with-crypto.png"))

        button("Pay with crypto").click()
        bot_says("Choose how much to add")
        page.screenshot(path=str(SHOTS / "2-crypto-amounts.png"))
        button(re.compile(r"^💎 \$5\.00$")).click()
        bot_says("Your invoice for $5.00 is ready")
        page.screenshot(path=str(SHOTS / "3-crypto-invoice.png"))

        with context.expect_page() as opened:
            button("Pay $5.00 in @CryptoBot").click()
        pay_page = opened.value
        pay_page.set_viewport_size(PHONE)
        expect(pay_page.locator(".amount")).to_have_text("5.00 USD", timeout=WAIT_MS)
        pay_page.screenshot(path=str(SHOTS / "4-sandbox-invoice-page.png"))
        pay_page.get_by_role("button", name="Pay 5.00 USD").click()
        expect(pay_page.locator(".ok").last).to_contain_text("Webhook delivered: HTTP 200", timeout=WAIT_MS)
        pay_page.screenshot(path=str(SHOTS / "5-sandbox-paid.png"))
        pay_page.close()

        paid = bot_says("Crypto payment received: $5.00 added.")
        expect(paid).to_contain_text("Available balance: $5.00")
        page.screenshot(path=str(SHOTS / "6-credited.png"))
        expect(bubbles.filter(has_text="Crypto payment received")).to_have_count(1)
        assert errors == []

        # --- staff see the paid invoice on the dashboard's Crypto page
        staff = context.new_page()
        staff.goto(dashboard + "/login")
        staff.locator("input[name=username]").fill("sandbox")
        staff.locator("input[name=password]").fill(password)
        staff.get_by_role("button", name="Log in").click()
        expect(staff.locator('nav.menu a[href="/crypto"]')).to_have_count(1, timeout=WAIT_MS)
        staff.goto(dashboard + "/crypto")  # at 390 px the menu folds away
        row = staff.locator("tbody tr").first
        expect(row).to_contain_text("$5.00", timeout=WAIT_MS)
        expect(row).to_contain_text("paid (webhook)")
        expect(row).to_contain_text("5.00 USDT")
        staff.screenshot(path=str(SHOTS / "7-dashboard-crypto-page.png"), full_page=True)
