"""Charts drawn on the server as small inline SVG: no script, no library, nothing fetched.

Each chart scales to its box (``viewBox``, width 100%), so it fits a 390 px phone as well as a
desk; it carries a ``<title>`` and ``<desc>`` for screen readers, and every bar its own
``<title>`` (a tooltip). The numbers behind every chart are also shown as a table by the
template, so nothing is only in a picture.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH = 360
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Bar:
    label: str  # shown on the axis or beside the bar
    value: float
    text: str  # the value in words, for the tooltip and the end of the bar
    short: str = ""  # a tick label under a column, if any


def _open(title: str, desc: str, height: int) -> str:
    n = next(_ids)
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-labelledby="chart{n}-t chart{n}-d" preserveAspectRatio="xMidYMid meet" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="chart{n}-t">{escape(title)}</title><desc id="chart{n}-d">{escape(desc)}</desc>'
    )


def columns(title: str, desc: str, bars: Sequence[Bar], *, top_text: Callable[[float], str]) -> Markup:
    """Vertical bars, one per day (oldest left), with the largest value marked on the axis."""
    height, left, bottom, top = 150, 4, 18, 14
    plot_w, plot_h = WIDTH - left - 4, height - bottom - top
    peak = max((b.value for b in bars), default=0) or 1
    step = plot_w / max(1, len(bars))
    parts = [_open(title, desc, height)]
    parts.append(
        f'<line x1="{left}" y1="{top}" x2="{WIDTH - 4}" y2="{top}" class="grid"/>'
        f'<text x="{left}" y="{top - 3}" class="axis">{escape(top_text(peak))}</text>'
        f'<line x1="{left}" y1="{top + plot_h}" x2="{WIDTH - 4}" y2="{top + plot_h}" class="base"/>'
    )
    for i, b in enumerate(bars):
        h = 0 if b.value <= 0 else max(1.0, plot_h * b.value / peak)
        x = left + i * step + step * 0.12
        parts.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{step * 0.76:.1f}" height="{h:.1f}" '
            f'class="bar"><title>{escape(b.label)}: {escape(b.text)}</title></rect>'
        )
        if b.short:  # the edge labels are anchored inwards so they are never cut off
            anchor, x_text = "middle", left + i * step + step / 2
            if i == len(bars) - 1:
                anchor, x_text = "end", WIDTH - 4
            elif i == 0:
                anchor, x_text = "start", left
            parts.append(
                f'<text x="{x_text:.1f}" y="{height - 5}" class="tick" '
                f'text-anchor="{anchor}">{escape(b.short)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def rows(title: str, desc: str, bars: Sequence[Bar], *, peak: float | None = None) -> Markup:
    """Horizontal bars with their label on the left and their value on the right."""
    row_h, label_w, value_w = 22, 120, 70
    height = max(1, len(bars)) * row_h + 4
    peak = peak if peak is not None else (max((b.value for b in bars), default=0) or 1)
    bar_w = WIDTH - label_w - value_w - 8
    parts = [_open(title, desc, height)]
    if not bars:
        parts.append(f'<text x="4" y="16" class="axis">{escape("Nothing yet in these 30 days.")}</text>')
    for i, b in enumerate(bars):
        y = 2 + i * row_h
        w = 0 if b.value <= 0 else max(1.0, bar_w * b.value / peak)
        label = b.label if len(b.label) <= 20 else b.label[:19] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" class="label" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{bar_w}" height="{row_h - 8}" class="track"/>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" class="bar">'
            f"<title>{escape(b.label)}: {escape(b.text)}</title></rect>"
            f'<text x="{WIDTH - 4}" y="{y + 15}" class="value" text-anchor="end">{escape(b.text)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
