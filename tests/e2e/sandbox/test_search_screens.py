"""Search, favourites and popular countries in the sandbox at a phone's width (390 px).

A person in headless Chromium (viewport 390 px) tops up, buys WhatsApp (so the country list
gets a "Popular" group), saves the pair with ⭐, finds the shortlist atop the service list,
searches by alias, by typo and by dialling code. Screenshots go to ``$NUMBERSHOP_SHOTS`` (or
artifacts/screenshots/search/).

The same page then checks ``bot.layout``'s width budget against a real render: every label
of every keyboard in every language (``tests/unit/test_keyboard_width``) is laid out in the
page's own keyboard CSS, as many to a row as the bot puts them, and none that the budget
accepts may be ellipsised by the browser. Skipped where Chromium or Playwright is missing.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from bot import layout
from core.search_data import LANGUAGES
from tests.e2e.sandbox.browser import WAIT_MS, sandbox_chat
from tests.e2e.sandbox.conftest import REPO
from tests.unit.test_keyboard_width import keyboards_in

SHOTS = Path(os.environ.get("NUMBERSHOP_SHOTS") or REPO / "artifacts" / "screenshots" / "search")

pytestmark = pytest.mark.slow

# Lays labels out in the page's keyboard CSS inside the last bot bubble (so with its width)
# and reports, per label, whether the browser had to ellipsise it and its natural width.
MEASURE = """
([rows]) => {
  const kb = [...document.querySelectorAll('.keyboard')].pop();
  const probe = document.createElement('span');
  probe.className = 'kb-button';
  probe.style.cssText = 'position:absolute;visibility:hidden;padding:0;flex:none;width:auto;overflow:visible';
  document.body.appendChild(probe);
  const out = [];
  for (const labels of rows) {
    const row = document.createElement('div');
    row.className = 'row';
    kb.appendChild(row);
    const buttons = labels.map((text) => {
      const b = document.createElement('button');
      b.className = 'kb-button';
      b.textContent = text;
      row.appendChild(b);
      return b;
    });
    for (const b of buttons) {
      probe.textContent = b.textContent;
      const pad = parseFloat(getComputedStyle(b).paddingLeft) + parseFloat(getComputedStyle(b).paddingRight);
      out.push([b.textContent, labels.length, b.scrollWidth > b.clientWidth,
                probe.getBoundingClientRect().width, b.clientWidth - pad]);
    }
    row.remove();
  }
  probe.remove();
  return out;
}
"""


def test_search_favourites_popular_at_phone_width(tmp_path: Path, processes) -> None:
    with sandbox_chat(tmp_path, processes, SHOTS, scale=2) as chat:
        page, expect, button, bot_says, send, shot = (
            chat.page,
            chat.expect,
            chat.button,
            chat.bot_says,
            chat.send,
            chat.shot,
        )
        chat.start()
        button("Balance & top up").click()
        bot_says("Your balance")
        button(re.compile(r"⭐ 250 → \$5\.00")).click()
        page.locator(".kb-button.pay").last.click()
        bot_says("Payment received")

        # Buy WhatsApp in Germany by alias and dialling code, and save the pair.
        send("/buy wa +49")  # the country list is first drawn after this purchase
        bot_says("Confirm your order")
        button("☆ Save").click()
        expect(button("⭐ Saved")).to_be_visible(timeout=WAIT_MS)
        button(re.compile(r"^✅ Buy for")).click()
        bot_says("Waiting for the code")
        button("Cancel & refund").click()
        bot_says("Order cancelled")

        send("/buy")
        listing = bot_says("Choose a service")
        expect(listing).to_contain_text("favourites")
        expect(button(re.compile(r"^⭐ WhatsApp 🇩🇪 · \$"))).to_be_visible()
        shot("1-services-with-favourites")

        button(re.compile(r"^WhatsApp · ")).click()
        bot_says("Most bought this week")
        expect(button(re.compile(r"^🔥 🇩🇪"))).to_be_visible()
        shot("2-countries-with-popular")
        button("Most in stock first").click()
        bot_says("Sorted by stock")
        shot("3-countries-by-stock")

        send("germny")
        bot_says("countries matching")
        shot("4-country-search-typo")
        send("/start")
        bot_says("Hi, Alex!")
        send("telegarm")
        bot_says("Services matching “telegarm”")
        shot("5-service-search-typo")
        send("fcbk")
        bot_says("Did you mean")
        shot("6-no-match-suggestions")

        # The width budget against this render.
        rows: list[list[str]] = []
        for lang in LANGUAGES:
            for markup in keyboards_in(lang).values():
                for row in markup.inline_keyboard:
                    labels = [b.text for b in row]
                    if labels not in rows:
                        rows.append(labels)
        measured = page.evaluate(MEASURE, [rows])
        cut = [(t, per, round(px), room) for t, per, ellipsised, px, room in measured if ellipsised]
        report = {}
        for per in (1, 2, 3):
            mine = [(t, px, room) for t, n, _e, px, room in measured if n == per]
            if not mine:
                continue
            room = min(r for _t, _p, r in mine)
            # Short labels (« Menu) have room to spare; the budget matters for long ones.
            long = [px / layout.label_width(t) for t, px, _r in mine if layout.label_width(t) >= 10]
            worst = max(long or [px / layout.label_width(t) for t, px, _r in mine])
            report[per] = {
                "room_px": room,
                "worst_px_per_unit": round(worst, 2),
                "budget_units": round(room / worst, 1),
                "our_budget": layout.BUDGET[per],
            }
        ratios = sorted(
            (
                (px / layout.label_width(t), t)
                for t, _n, _e, px, _r in measured
                if layout.label_width(t) >= 10
            ),
            reverse=True,
        )
        report["widest_per_unit"] = [[round(r, 2), t] for r, t in ratios[:12] if layout.label_width(t) >= 10]
        (SHOTS / "calibration.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
        assert cut == [], cut[:10]

    assert chat.shop.stop(signal.SIGTERM) == 0, chat.shop.output
    assert "Traceback" not in "".join(chat.shop.stderr), chat.shop.output
