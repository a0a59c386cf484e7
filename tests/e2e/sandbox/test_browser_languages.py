"""The sandbox at phone width in every language: the simulated user picks the Telegram app
language on the page and the bot answers in it. Screenshots of the main menu, the service
list, a country list and the confirm screen at 390 px go to artifacts/screenshots/i18n/;
labels of each screen the page had to cut off (ellipsis) are listed in cut-off.json there:
the menu, the country list and the confirm screen must have none (the service list's
two-column layout is the search feature's). Skipped, with the
reason, where Chromium or Playwright is missing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.sandbox.conftest import REPO, SANDBOX_URL, run_shop
from tests.e2e.sandbox.test_browser import CHROMIUM, FLAGS, WAIT_MS

SHOTS = REPO / "artifacts" / "screenshots" / "i18n"

pytestmark = pytest.mark.slow

# picker value -> what the bot must say on each screen
LANGUAGES = {
    "en": ("🛒 Buy number", "Choose a service", "choose a country", "Confirm your order", "✅ Buy for"),
    "ru": ("🛒 Купить номер", "Выберите сервис", "выберите страну", "Подтвердите заказ", "✅ Купить за"),
    "es": ("🛒 Comprar número", "Elige un servicio", "elige un país", "Confirma tu pedido", "✅ Comprar por"),
    "pt-br": (
        "🛒 Comprar número",
        "Escolha um serviço",
        "escolha um país",
        "Confirme seu pedido",
        "✅ Comprar por",
    ),
    "id": ("🛒 Beli nomor", "Pilih layanan", "pilih negara", "Konfirmasi pesananmu", "✅ Beli seharga"),
}

# The buttons of the newest keyboard (the screen just shown) that the page had to cut off.
CUT_OFF = """() => {
  const boards = document.querySelectorAll('.keyboard');
  const last = boards[boards.length - 1];
  return last ? [...last.querySelectorAll('.kb-button')]
    .filter((b) => b.scrollWidth > b.clientWidth + 1).map((b) => b.textContent) : [];
}"""


def test_each_language_at_phone_width(tmp_path: Path, processes) -> None:
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
    cut_off: dict[str, list[str]] = {}

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            for n, (lang, (buy, services, countries, confirm, buy_for)) in enumerate(LANGUAGES.items()):
                page = browser.new_page(viewport={"width": 390, "height": 844}, locale="en-US")
                page.goto(f"{base}/?user={9100 + n}&name=Alex")
                expect(page.get_by_test_id("start")).to_be_visible(timeout=WAIT_MS)
                page.get_by_test_id("language").select_option(lang)
                expect(page.locator("#toast")).to_contain_text("App language changed", timeout=WAIT_MS)
                bubbles = page.get_by_test_id("bubble")

                def button(name: str | re.Pattern[str], page=page):  # type: ignore[no-untyped-def]
                    return page.get_by_test_id("inline-button").filter(has_text=name).last

                def bot_says(text: str, bubbles=bubbles):  # type: ignore[no-untyped-def]
                    found = bubbles.filter(has_text=text).last
                    expect(found).to_be_visible(timeout=WAIT_MS)
                    return found

                def shot(screen: str, lang=lang, page=page) -> None:
                    page.locator("#toast").evaluate("t => t.hidden = true")
                    page.screenshot(path=str(SHOTS / f"{lang}-{screen}.png"))
                    cut_off[f"{lang}-{screen}"] = page.evaluate(CUT_OFF)

                page.get_by_test_id("start").click()
                expect(button(buy)).to_be_visible(timeout=WAIT_MS)
                # Top up so the confirm screen offers Buy.
                button("💰").click()
                button(re.compile(r"^⭐ 250 ")).click()
                page.locator(".kb-button.pay").last.click()
                expect(page.get_by_test_id("payment").last).to_be_visible(timeout=WAIT_MS)
                page.get_by_test_id("composer-input").fill("/start")
                page.get_by_test_id("composer-input").press("Enter")
                expect(bubbles.last).to_contain_text("👋", timeout=WAIT_MS)
                shot("1-menu")
                button(buy).click()
                bot_says(services)
                shot("2-services")
                button(re.compile(r"^WhatsApp · ")).click()
                bot_says(countries)
                shot("3-countries")
                page.get_by_test_id("inline-button").filter(has_text=" · ").first.click()  # cheapest
                bot_says(confirm)
                expect(button(buy_for)).to_be_visible(timeout=WAIT_MS)
                shot("4-confirm")
                page.close()
        finally:
            browser.close()
    (SHOTS / "cut-off.json").write_text(json.dumps(cut_off, ensure_ascii=False, indent=1))
    assert not any(labels for screen, labels in cut_off.items() if not screen.endswith("2-services")), cut_off
