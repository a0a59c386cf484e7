"""How wide a button label is on a phone, so no label is cut off at 390 px.

Telegram cuts a label that does not fit its button with "…", and a cut price or country is a
wrong answer. Keyboards ask ``fits`` before putting two (or three) buttons in a row and fall
back to one per row; ``tests/unit/test_keyboard_width.py`` renders every keyboard the bot can
send in every language and checks every label against ``BUDGET``.

Width is counted in "units" of one average Latin letter, from the characters alone (no font
needed): East Asian wide/full-width characters and emoji count two, a flag (two regional
indicators) counts two, joiners, variation selectors and combining marks count nothing,
thin punctuation counts half and wide letters (m, w, Ш, Ж, …) a unit and a half.

Calibration (how BUDGET was chosen): the sandbox chat page was rendered in headless
Chromium at a 390 px wide viewport (Playwright, ``--headless --no-sandbox``), and buttons
of growing width in units were laid out one, two and three to a row in the page's own
keyboard CSS; the budget is the widest label that was not ellipsised in each layout, less a
unit of margin for fonts wider than the sandbox's (Telegram's clients use the system font,
about 15 px). ``bench``-free: re-run ``python -m bot.layout calibrate`` to repeat it.
"""

from __future__ import annotations

import unicodedata

#: Most units a label may take in a row of 1, 2 or 3 buttons at 390 px.
BUDGET: dict[int, float] = {1: 34.0, 2: 16.0, 3: 10.0}

_THIN = set(" .,·:;|!'il()[]/-‹›«»")
_WIDE_LETTERS = set("mwMWшщжмыюфШЩЖМЫЮФ@%")


def char_width(ch: str) -> float:
    code = ord(ch)
    if ch in ("\u200d", "\ufe0f", "\ufe0e") or unicodedata.combining(ch):
        return 0.0
    if 0x1F1E6 <= code <= 0x1F1FF:  # regional indicator: a pair makes one flag, two units wide
        return 1.0
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 2.0
    if code >= 0x2600 and unicodedata.category(ch) == "So":  # ⭐ ✅ ❌ … drawn as emoji
        return 2.0
    if ch in _THIN:
        return 0.5
    if ch in _WIDE_LETTERS:
        return 1.5
    if ch.isupper() or ch.isdigit():
        return 1.15
    return 1.0


def label_width(text: str) -> float:
    return sum(char_width(ch) for ch in text)


def fits(text: str, per_row: int) -> bool:
    return label_width(text) <= BUDGET[per_row]


def rows_of(labels_and_items: list[tuple[str, object]], per_row: int = 2) -> list[list[object]]:
    """Pack items ``per_row`` to a row while every label in the row fits; else one to a row."""
    rows: list[list[object]] = []
    pending: list[object] = []
    for label, item in labels_and_items:
        if per_row > 1 and fits(label, per_row):
            pending.append(item)
            if len(pending) == per_row:
                rows.append(pending)
                pending = []
        else:
            if pending:
                rows.append(pending)
                pending = []
            rows.append([item])
    if pending:
        rows.append(pending)
    return rows
