"""The one retry-delay formula: exponential ceiling, capped, full jitter from an injected
random source."""

from __future__ import annotations

import random

from core.backoff import Backoff


def test_without_jitter_the_delay_is_the_capped_ceiling():
    b = Backoff(base=15, cap=600, jitter=False)
    assert [b.delay(n) for n in range(8)] == [15, 30, 60, 120, 240, 480, 600, 600]
    assert b.delay(-1) == 15  # "no attempt yet" is the first retry
    assert b.delay(10_000) == 600  # no overflow however long it failed


def test_jitter_stays_between_floor_and_ceiling_and_is_reproducible():
    one = Backoff(base=5, cap=300, floor=1, rng=random.Random(42))
    two = Backoff(base=5, cap=300, floor=1, rng=random.Random(42))
    draws = [one.delay(n) for n in range(12)]
    assert draws == [two.delay(n) for n in range(12)]
    for n, d in enumerate(draws):
        assert 1 <= d <= min(300, 5 * 2**n)
    assert len(set(draws)) == len(draws)  # spread out, not all at the ceiling


def test_a_floor_above_the_ceiling_gives_the_ceiling():
    b = Backoff(base=0.5, cap=10, floor=3, rng=random.Random(1))
    assert b.delay(0) == 0.5
