"""The next steps in headless Chromium at a phone's width (390 px), in the sandbox that
``numbershop run`` serves: a confirm screen short of money → a top-up of exactly the
difference → Continue back to confirm → buy → code → My orders → "code didn't work".
Screenshots go to artifacts/screenshots/sandbox/next-steps-*.png. Skipped, with the reason,
where Chromium or Playwright is missing."""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

import pytest

from tests.e2e.sandbox.conftest import REPO, SANDBOX_URL, control, run_shop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SHOTS = REPO / "artifacts" / "screenshots" / "sandbox"
WAIT_MS = 20_000

pytestmark = pytest.mark.slow


def test_shortfall_continue_history_ticket_at_phone_width(tmp_path: Path, processes) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is missing at {CHROMIUM}")
    expect = playwright.expect
    proc = run_shop(tmp_path, "run", "--port", "0", "--admin-port", "0", "--code-delay", "off")
    processes.append(proc)
    base = proc.wait_for(SANDBOX_URL).group(1)
    SHOTS.mkdir(parents=True, exist_ok=True)

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base + "/")
            bubbles = page.get_by_test_id("bubble")

            def shot(name: str) -> None:
                page.screenshot(path=str(SHOTS / f"next-steps-{name}.png"))

            def button(name: str | re.Pattern[str]):
                return page.get_by_test_id("inline-button").filter(has_text=name).last

            def bot_says(text: str | re.Pattern[str]):
                found = bubbles.filter(has_text=text).last
                expect(found).to_be_visible(timeout=WAIT_MS)
                return found

            def send(text: str) -> None:
                page.get_by_test_id("composer-input").fill(text)
                page.get_by_test_id("composer-input").press("Enter")

            expect(page.get_by_test_id("start")).to_be_visible(timeout=WAIT_MS)
            page.get_by_test_id("start").click()
            bot_says("Available balance: $0.00")

            # --- the confirm screen short of money offers exactly the difference
            send("/buy whatsapp ID")
            confirm = bot_says("Not enough money")
            expect(confirm).to_contain_text("This price is kept for")
            expect(confirm).to_contain_text("waits up to")
            top_up = button(re.compile(r"^⭐ Top up \$.*Stars\)$"))
            expect(top_up).to_be_visible()
            shot("1-confirm-shortfall")

            # --- pay it; the topped-up message offers Continue back to the confirm screen
            top_up.click()
            expect(page.get_by_test_id("invoice").last).to_be_visible(timeout=WAIT_MS)
            page.locator(".kb-button.pay").last.click()
            bot_says("Tap Continue")
            expect(button(re.compile(r"^Continue: WhatsApp"))).to_be_visible()
            shot("2-after-top-up-continue")
            button(re.compile(r"^Continue: WhatsApp")).click()
            bot_says("Confirm your order")
            button(re.compile(r"^✅ Buy for")).click()
            order = bot_says("Waiting for the code")
            phone = re.search(r"Number: (\+\d+)", order.inner_text()).group(1)
            card = page.get_by_test_id("activation").filter(has_text=phone)
            expect(card).to_be_attached(timeout=WAIT_MS)
            card.get_by_test_id("deliver").click(force=True)  # the side panel is off-screen on a phone
            bot_says("Code for WhatsApp")
            expect(page.locator("#toast")).to_be_hidden(timeout=WAIT_MS)

            # --- My orders
            send("/orders")
            bot_says("My orders")
            page.evaluate("window.scrollTo(0, 0)")
            shot("3-history")

            # --- "code didn't work" (its button sits on the order screen; pressed here by data)
            bot_id = control(base, "GET", "/sandbox/api/config")["bot"]["id"]
            chat = control(base, "GET", f"/control/bots/{bot_id}/chats/1001")
            view = next(
                b["callback_data"]
                for m in reversed(chat["messages"])
                for row in m.get("keyboard") or []
                for b in row
                if str(b.get("callback_data", "")).startswith("o:view:")
            )
            control(
                base,
                "POST",
                f"/control/bots/{bot_id}/chats/1001/press",
                {"data": view.replace("o:view:", "o:ticket:"), "forge": True},
            )
            bot_says("we opened ticket")
            page.evaluate("window.scrollTo(0, 0)")
            shot("4-ticket-opened")
            assert errors == [], errors
        finally:
            browser.close()
    assert proc.stop(signal.SIGTERM) == 0, proc.output
