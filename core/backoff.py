"""Retry delays: exponential back-off with full jitter, the one formula every retry uses.

Why jitter: when a provider or Telegram comes back after an outage, every retry scheduled
with the same plain ``base * 2 ** attempt`` fires in the same second and knocks it over
again. Full jitter (a uniform draw between a floor and the exponential ceiling, as in the
AWS Architecture Blog's "Exponential Backoff and Jitter") spreads them out.

The random source is injectable so tests get exact delays: ``Backoff(..., rng=Random(seed))``,
or ``jitter=False`` for the plain ceiling.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MAX_EXPONENT = 16  # beyond this every realistic cap is reached; keeps 2 ** n small


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float  # the first retry's ceiling, seconds
    cap: float  # no retry waits longer than this
    jitter: bool = True
    floor: float = 0.0  # with jitter, never retry sooner than this
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def ceiling(self, attempt: int) -> float:
        """``base * 2 ** attempt`` capped at ``cap``; ``attempt`` 0 is the first retry."""
        return float(min(self.cap, self.base * 2 ** min(max(attempt, 0), MAX_EXPONENT)))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first): a uniform draw
        in ``[floor, ceiling]`` with jitter, exactly the ceiling without."""
        top = self.ceiling(attempt)
        if not self.jitter:
            return top
        return self.rng.uniform(min(self.floor, top), top)
