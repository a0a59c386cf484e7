"""A person at the sandbox page in headless Chromium: the shop started as ``numbershop run``,
the page open, and the few gestures every browser journey uses (press a button, wait for
the bot to say something, type, take a screenshot). Skips where Playwright or Chromium is
missing."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.sandbox.conftest import SANDBOX_URL, ShopProcess, run_shop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
WAIT_MS = 20_000
PHONE = {"width": 390, "height": 844}


@dataclass
class SandboxChat:
    page: Any  # playwright.sync_api.Page
    expect: Any  # playwright.sync_api.expect
    base: str  # the sandbox's URL
    shop: ShopProcess
    shots: Path
    errors: list[str]  # JavaScript errors the page raised

    def button(self, name: str | re.Pattern[str]) -> Any:
        """The newest inline button whose label contains ``name``."""
        return self.page.get_by_test_id("inline-button").filter(has_text=name).last

    def bot_says(self, text: str | re.Pattern[str]) -> Any:
        """Wait for the newest bubble containing ``text``; return it."""
        found = self.page.get_by_test_id("bubble").filter(has_text=text).last
        self.expect(found).to_be_visible(timeout=WAIT_MS)
        return found

    def send(self, text: str) -> None:
        self.page.get_by_test_id("composer-input").fill(text)
        self.page.get_by_test_id("composer-input").press("Enter")

    def start(self, greeting: str = "Hi, Alex!") -> None:
        self.expect(self.page.get_by_test_id("start")).to_be_visible(timeout=WAIT_MS)
        self.page.get_by_test_id("start").click()
        self.bot_says(greeting)

    def shot(self, name: str) -> None:
        self.expect(self.page.locator("#toast")).to_be_hidden(timeout=WAIT_MS)
        self.page.screenshot(path=str(self.shots / f"{name}.png"))


@contextmanager
def sandbox_chat(
    tmp_path: Path,
    processes: list[ShopProcess],
    shots: Path,
    *,
    viewport: dict[str, int] = PHONE,
    scale: float = 1,
) -> Iterator[SandboxChat]:
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is missing at {CHROMIUM} (apt-get install chromium)")
    shop = run_shop(tmp_path, "run", "--port", "0", "--admin-port", "0", "--code-delay", "off")
    processes.append(shop)
    base = shop.wait_for(SANDBOX_URL).group(1)
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_context(viewport=viewport, device_scale_factor=scale).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base + "/")
            yield SandboxChat(page, playwright.expect, base, shop, shots, errors)
        finally:
            browser.close()
