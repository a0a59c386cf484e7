"""A person in headless Chromium, on a 390 px phone-sized window, tops up with crypto in the
sandbox: Balance → Pay with crypto → $5.00 → the pay link opens the simulated Crypto Pay page
→ Pay → the signed webhook reaches the dashboard → the chat says the money arrived, once.
Screenshots go to artifacts/screenshots/crypto/. Skipped where Chromium or Playwright is
missing.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.sandbox.conftest import REPO, SANDBOX_URL, run_shop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SHOTS = REPO / "artifacts" / "screenshots" / "crypto"
WAIT_MS = 20_000
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.slow


def test_pay_a_crypto_invoice_in_the_sandbox(tmp_path: Path, processes) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is missing at {CHROMIUM}")
    expect = playwright.expect
    proc = run_shop(tmp_path, "run", "--port", "0", "--admin-port", "0", "--code-delay", "off")
    processes.append(proc)
    base = proc.wait_for(SANDBOX_URL).group(1)
    dashboard, password = proc.wait_for(r"dashboard +(http://\S+?)/? \(log in as sandbox / (\S+)\)").groups()
    SHOTS.mkdir(parents=True, exist_ok=True)

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            context = browser.new_context(viewport=PHONE)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base + "/")
            bubbles = page.get_by_test_id("bubble")

            def button(name: str | re.Pattern[str]):
                return page.get_by_test_id("inline-button").filter(has_text=name).last

            def bot_says(text: str | re.Pattern[str]):
                found = bubbles.filter(has_text=text).last
                expect(found).to_be_visible(timeout=WAIT_MS)
                return found

            expect(page.get_by_test_id("start")).to_be_visible(timeout=WAIT_MS)
            page.get_by_test_id("start").click()
            bot_says("Hi, Alex!")
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
            expect(pay_page.locator(".ok").last).to_contain_text(
                "Webhook delivered: HTTP 200", timeout=WAIT_MS
            )
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
        finally:
            browser.close()
