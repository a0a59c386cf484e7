"""How wide a button label is on a phone, so no label is cut off at 390 px.

Telegram cuts a label that does not fit its button with "…", and a cut price or country is a
wrong answer. Keyboards ask ``fits`` before putting two (or three) buttons in a row and fall
back to one per row; ``tests/unit/test_keyboard_width.py`` renders every keyboard the bot can
send in every language and checks every label against ``BUDGET``.

Width is counted in "units" of one average Latin letter, from the characters alone (no font
needed): an emoji, a flag (two regional indicators) or an East Asian wide/full-width
character counts ``EMOJI`` units; joiners, variation selectors and combining marks nothing;
thin punctuation half; capitals, digits and Cyrillic a little more; wide letters (m, W, Ж, …)
a unit and a half.

Calibration (how ``BUDGET`` was chosen): ``tests/e2e/sandbox/test_search_screens.py`` opens
the sandbox chat in headless Chromium at a 390 px wide viewport (Playwright,
``--headless --no-sandbox --disable-gpu``), lays out every label of every keyboard in every
language in the page's own keyboard CSS (14 px, as many to a row as the bot puts them), and
writes ``calibration.json``: the room inside a button (275 px one to a row, 127 px two, 78 px
three) and the widest pixels per unit seen among long labels (8.4 px). Room divided by that
gives 32.8, 15.1 and 9.4 units; ``BUDGET`` is a little under each, and that test fails if the
browser ellipsises any label this budget accepts.
"""

from __future__ import annotations

import unicodedata
from typing import TypeVar

T = TypeVar("T")

#: Most units a label may take in a row of 1, 2 or 3 buttons at 390 px.
BUDGET: dict[int, float] = {1: 32.0, 2: 14.5, 3: 9.0}

EMOJI = 2.5  # an emoji or a CJK character, in units

_THIN = set(" .,·:;|!'il()[]/-‹›«»")
_WIDE_LETTERS = set("mwMWшщжмыюфШЩЖМЫЮФ@%")


def char_width(ch: str) -> float:
    code = ord(ch)
    if ch in ("\u200d", "\ufe0f", "\ufe0e") or unicodedata.combining(ch):
        return 0.0
    if 0x1F1E6 <= code <= 0x1F1FF:  # regional indicator: a pair makes one flag glyph
        return EMOJI / 2
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return EMOJI
    if code >= 0x2600 and unicodedata.category(ch) == "So":  # ⭐ ✅ ❌ … drawn as emoji
        return EMOJI
    if ch in _THIN:
        return 0.5
    if ch in _WIDE_LETTERS:
        return 1.5
    cyrillic = 0x0400 <= code <= 0x04FF
    if ch.isupper() or ch.isdigit():
        return 1.3 if cyrillic else 1.15
    return 1.1 if cyrillic else 1.0


def label_width(text: str) -> float:
    return sum(char_width(ch) for ch in text)


def fits(text: str, per_row: int) -> bool:
    return label_width(text) <= BUDGET[per_row]


def first_fitting(variants: list[str], per_row: int) -> str:
    """The first (richest) label that fits; the last (shortest) when none does."""
    for label in variants:
        if fits(label, per_row):
            return label
    return variants[-1]


def rows_of(labels_and_items: list[tuple[str, T]], per_row: int = 2) -> list[list[T]]:
    """Pack items ``per_row`` to a row while every label in the row fits; else one to a row."""
    rows: list[list[T]] = []
    pending: list[T] = []
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
