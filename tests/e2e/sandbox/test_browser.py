"""A person in headless Chromium uses the sandbox that ``numbershop run`` serves with nothing
configured: start → top up with Stars → buy → deliver a code → the code is shown → buy again
→ cancel → refunded. Screenshots go to artifacts/screenshots/sandbox/. Skipped, with the
reason, where Chromium or Playwright is missing.

The process runs with ``--code-delay off`` so the only code is the one the test delivers (a
code arriving on its own before the cancel would rightly complete the order instead).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.money import parse_amount
from tests.e2e.sandbox.conftest import REPO, SANDBOX_URL, clean_env, run_shop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = REPO / "artifacts" / "screenshots" / "sandbox"
WAIT_MS = 20_000

pytestmark = pytest.mark.slow


def money(text: str) -> int:
    found = re.search(r"\$(\d+\.\d\d)", text)
    assert found, text
    return parse_amount(found.group(1), "USD")


def test_start_top_up_buy_code_buy_cancel_refund(tmp_path: Path, processes) -> None:
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (pip install playwright)"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is missing at {CHROMIUM} (apt-get install chromium chromium-driver)")
    expect = playwright.expect

    proc = run_shop(tmp_path, "run", "--port", "0", "--admin-port", "0", "--code-delay", "off")
    processes.append(proc)
    base = proc.wait_for(SANDBOX_URL).group(1)
    SHOTS.mkdir(parents=True, exist_ok=True)

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base + "/")

            def shot(name: str) -> None:
                page.screenshot(path=str(SHOTS / f"{name}.png"))

            bubbles = page.get_by_test_id("bubble")

            def button(name: str | re.Pattern[str]):
                return page.get_by_test_id("inline-button").filter(has_text=name).last

            def bot_says(text: str | re.Pattern[str]):
                found = bubbles.filter(has_text=text).last
                expect(found).to_be_visible(timeout=WAIT_MS)
                return found

            # --- start
            expect(page.get_by_test_id("start")).to_be_visible(timeout=WAIT_MS)
            shot("1-empty-chat")
            page.get_by_test_id("start").click()
            bot_says("Hi, Alex!")
            expect(bubbles.last).to_contain_text("Available balance: $0.00")

            # --- top up with Stars: a package, the invoice, Pay
            button("Balance & top up").click()
            bot_says("Your balance")
            button(re.compile(r"⭐ 250 → \$5\.00")).click()
            invoice = page.get_by_test_id("invoice").last
            expect(invoice).to_contain_text("Top up $5.00", timeout=WAIT_MS)
            page.locator(".kb-button.pay").last.click()
            expect(page.get_by_test_id("payment").last).to_contain_text("250 Stars", timeout=WAIT_MS)
            paid = bot_says("Payment received")
            expect(paid).to_contain_text("Available balance: $5.00")
            expect(invoice).to_contain_text("Paid")
            shot("2-topped-up")

            # --- buy: service, country, confirm
            def send(text: str) -> None:
                page.get_by_test_id("composer-input").fill(text)
                page.get_by_test_id("composer-input").press("Enter")

            def buy() -> int:
                send("/start")
                bot_says("Hi, Alex!")
                button("Buy number").click()
                bot_says("Choose a service")
                button(re.compile(r"^WhatsApp · ")).click()
                bot_says("choose a country")
                button(re.compile(r"left$")).first.click()
                bot_says("Confirm your order")
                buy_button = button(re.compile(r"^✅ Buy for \$"))
                price = money(buy_button.inner_text())
                buy_button.click()
                order = bot_says("Waiting for the code")
                phone = re.search(r"Number: (\+\d+)", order.inner_text()).group(1)
                return price, phone

            def card_of(phone: str):
                return page.get_by_test_id("activation").filter(has_text=phone)

            first_price, first_phone = buy()
            card = card_of(first_phone)
            expect(card).to_contain_text("waiting for SMS", timeout=WAIT_MS)
            expect(card).to_contain_text("· waiting ·")
            shot("3-bought")

            # --- deliver a code from the panel; the chat shows it
            card.get_by_test_id("deliver").click()
            toast = page.locator("#toast")
            expect(toast).to_contain_text("delivered", timeout=WAIT_MS)
            code = re.search(r"code (\S+) delivered", toast.inner_text()).group(1)
            code_msg = bot_says("Code for WhatsApp")
            expect(code_msg.locator("code")).to_have_text(code)
            bot_says("Completed")
            expect(card).to_contain_text("1 code sent", timeout=WAIT_MS)
            shot("4-code-shown")

            # --- buy again, cancel, refunded
            second_price, second_phone = buy()
            expect(card_of(second_phone)).to_have_count(1, timeout=WAIT_MS)
            button("Cancel & refund").click()
            refund = bot_says("Order cancelled")
            expected = 500 - first_price
            assert money(refund.inner_text().split("refunded", 1)[0]) == second_price
            assert money(refund.inner_text().split("balance is now", 1)[1]) == expected
            bot_says("is back on your balance")
            expect(card_of(second_phone)).to_have_count(0, timeout=WAIT_MS)  # cancelled upstream
            shot("5-cancelled-refunded")

            # --- the balance screen agrees
            send("/balance")
            balance = bot_says("Your balance")
            expect(balance).to_contain_text("Held for open orders: $0.00")
            expect(balance).to_contain_text(f"Available: ${expected / 100:.2f}")
            assert errors == [], errors
        finally:
            browser.close()

    assert proc.stop(signal.SIGTERM) == 0, proc.output
    assert "Traceback" not in "".join(proc.stderr), proc.output
    check = subprocess.run(
        [sys.executable, "-m", "numbershop", "ledger", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(DATABASE_URL="sqlite:///data/sandbox.db"),
    )
    assert check.returncode == 0, check.stdout + check.stderr
