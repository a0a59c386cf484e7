"""The next steps in headless Chromium at a phone's width (390 px), in the sandbox that
``numbershop run`` serves: a confirm screen short of money → a top-up of exactly the
difference → Continue back to confirm → buy → code → My orders → "code didn't work".
Screenshots go to artifacts/screenshots/sandbox/next-steps-*.png. Skipped, with the reason,
where Chromium or Playwright is missing."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.e2e.sandbox.browser import WAIT_MS, sandbox_chat
from tests.e2e.sandbox.conftest import REPO

SHOTS = REPO / "artifacts" / "screenshots" / "sandbox"

pytestmark = pytest.mark.slow


def test_shortfall_continue_history_ticket_at_phone_width(tmp_path: Path, processes) -> None:
    with sandbox_chat(tmp_path, processes, SHOTS) as chat:
        page, expect, button, bot_says, send = chat.page, chat.expect, chat.button, chat.bot_says, chat.send

        def shot(name: str) -> None:
            page.screenshot(path=str(SHOTS / f"next-steps-{name}.png"))

        chat.start("Available balance: $0.00")
        errors = chat.errors

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

        # --- "code didn't work", from the order screen's own button
        button("Code didn't work").click()
        bot_says("we opened ticket")
        page.evaluate("window.scrollTo(0, 0)")
        shot("4-ticket-opened")
        assert errors == [], errors
    assert chat.shop.stop(signal.SIGTERM) == 0, chat.shop.output
