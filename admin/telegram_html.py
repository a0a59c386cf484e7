"""Broadcast text checked as Telegram checks it, and a safe preview of what users will read.

The parser is the emulator's (it follows Telegram's own HTML parser, the same one the bot's
tests run against), imported when first needed. The preview is rebuilt from the parsed plain
text and entities, never from the staff's HTML, so nothing typed can run in the dashboard.
"""

from __future__ import annotations

from html import escape
from typing import Any

from markupsafe import Markup

from admin.forms import FormError

_WRAP = {
    "bold": ("<b>", "</b>"),
    "italic": ("<i>", "</i>"),
    "underline": ("<u>", "</u>"),
    "strikethrough": ("<s>", "</s>"),
    "spoiler": ('<span class="spoiler">', "</span>"),
    "code": ("<code>", "</code>"),
    "pre": ("<pre>", "</pre>"),
    "blockquote": ("<blockquote>", "</blockquote>"),
    "expandable_blockquote": ("<blockquote>", "</blockquote>"),
}


def parse(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities, or a FormError with Telegram's own reason."""
    from numbershop.emulator.errors import BotApiError
    from numbershop.emulator.formatting import render

    try:
        return render(text, "HTML")
    except BotApiError as exc:
        reason = exc.description.removeprefix("Bad Request: ")
        raise FormError(f"Telegram would refuse this message ({reason}); fix the HTML") from None


def preview(plain: str, entities: list[dict[str, Any]]) -> Markup:
    """The message as HTML for the dashboard: our own tags around escaped text."""
    units = plain.encode("utf-16-le")
    opens: dict[int, list[str]] = {}
    closes: dict[int, list[str]] = {}
    for e in sorted(entities, key=lambda e: (e["offset"], -e["length"])):
        if e["type"] == "text_link":
            url = str(e.get("url") or "")
            shown = escape(url) if url.startswith(("http://", "https://", "tg://")) else "(link)"
            start, end = '<span class="link" title="' + shown + '">', "</span>"
        elif e["type"] in _WRAP:
            start, end = _WRAP[e["type"]]
        else:
            continue
        opens.setdefault(e["offset"], []).append(start)
        closes.setdefault(e["offset"] + e["length"], []).insert(0, end)
    out: list[str] = []
    boundaries = sorted({0, len(units) // 2, *opens, *closes})
    for a, b in zip(boundaries, boundaries[1:], strict=False):
        out += closes.get(a, [])
        out += opens.get(a, [])
        out.append(escape(units[2 * a : 2 * b].decode("utf-16-le", errors="replace")))
    out += closes.get(len(units) // 2, [])
    return Markup("".join(out))
