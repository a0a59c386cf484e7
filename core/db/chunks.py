"""Long id lists cut into IN (…) lists a database accepts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

_T = TypeVar("_T")

SQL_IN_CHUNK = 900  # ids per IN (…) list: well under SQLite's bound-parameter limit


def chunks(items: Sequence[_T], size: int = SQL_IN_CHUNK) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
