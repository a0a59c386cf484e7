"""Numbers from requests: finite or refused.

``float("nan")`` and ``float("inf")`` parse, and JSON's ``NaN``/``Infinity`` literals load,
in Python. A NaN timeout compares false with everything: it passes every clamp
(``min(max(nan, 0), 60)`` is ``nan``), a long poll computed from it never ends, and its
deadline sits in the event loop's timer heap where no comparison can order it, so later
timers stop firing. Every number a client sends is read through here and refused at the
door when it is not finite.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_float(value: object) -> float:
    """``value`` as a finite float; ``ValueError`` for anything else (bools included)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)  # type: ignore[arg-type]  # any value may be tried: TypeError is caught
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def strict_json(text: str) -> Any:
    """``json.loads`` without the non-standard ``NaN``, ``Infinity`` and ``-Infinity``."""
    return json.loads(text, parse_constant=_refuse_constant)
