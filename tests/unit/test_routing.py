"""Routing by delivered codes: the prior, the floor, the exploration bound, the decay, and the
provider tried last after an expiry (pure functions, no database)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from core.delivery_stats import Outcome, Stats, apply_outcomes, decay
from core.routing import RoutingParams, rank, smoothed_rate

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NO_EXPLORE = RoutingParams(exploration=0.0)


def stats(rented: float, delivered: float, at: datetime = NOW) -> Stats:
    return Stats(rented=rented, delivered=delivered, first_code_seconds=0.0, decayed_at=at)


def names(ranked) -> list[str]:
    return [s.provider for s in ranked]


def test_a_new_combination_starts_at_the_prior_mean():
    rate, evidence = smoothed_rate(None, RoutingParams(prior_successes=2, prior_failures=1), NOW)
    assert rate == pytest.approx(2 / 3) and evidence == 0


def test_the_prior_smooths_a_few_results():
    params = RoutingParams(prior_successes=2, prior_failures=1)
    one_failure, _ = smoothed_rate(stats(1, 0), params, NOW)
    assert one_failure == pytest.approx(2 / 4)  # one miss does not condemn a provider
    many_failures, _ = smoothed_rate(stats(100, 0), params, NOW)
    assert many_failures < 0.03


def test_cheapest_wins_without_evidence_in_priority_order_on_a_tie():
    ranked = rank([("b", 50), ("a", 50), ("c", 40)], {}, params=NO_EXPLORE, now=NOW)
    assert names(ranked) == ["c", "b", "a"]


def test_a_dearer_provider_that_delivers_beats_a_cheap_one_that_does_not():
    ranked = rank(
        [("cheap", 40), ("good", 70)],
        {"cheap": stats(100, 30), "good": stats(100, 85)},
        params=NO_EXPLORE,
        now=NOW,
    )
    assert names(ranked) == ["good", "cheap"]
    assert ranked[0].expected_cost < ranked[1].expected_cost


def test_below_the_floor_is_tried_only_after_the_others():
    params = RoutingParams(exploration=0.0, success_floor=0.2, floor_min_rentals=5)
    # "bad" is so cheap that cost/rate would still put it first; the floor skips it.
    ranked = rank(
        [("bad", 5), ("ok", 60)], {"bad": stats(50, 5), "ok": stats(50, 30)}, params=params, now=NOW
    )
    assert names(ranked) == ["ok", "bad"]
    assert ranked[1].below_floor
    # Stays available when nothing else is offered (the caller fails over down the list).
    assert names(rank([("bad", 5)], {"bad": stats(50, 5)}, params=params, now=NOW)) == ["bad"]


def test_the_floor_waits_for_enough_evidence():
    params = RoutingParams(exploration=0.0, success_floor=0.5, floor_min_rentals=5)
    ranked = rank(
        [("new", 10), ("old", 60)], {"new": stats(3, 0), "old": stats(50, 40)}, params=params, now=NOW
    )
    assert not ranked[0].below_floor and names(ranked)[0] == "new"


def test_exploration_share_is_bounded_and_goes_to_the_least_known():
    params = RoutingParams(exploration=0.05)
    rng = random.Random(7)
    known = {"best": stats(500, 450), "mid": stats(500, 300)}
    candidates = [("best", 50), ("mid", 50), ("fresh", 50)]
    firsts = [rank(candidates, known, params=params, now=NOW, rng=rng)[0] for _ in range(4000)]
    explored = [s for s in firsts if s.explored]
    assert all(s.provider == "fresh" for s in explored)  # never seen: it gets the traffic
    assert 0.03 < len(explored) / len(firsts) < 0.07  # about the share asked for, never most
    assert all(s.provider == "best" for s in firsts if not s.explored)


def test_exploration_is_off_at_zero_and_never_picks_the_avoided_provider():
    rng = random.Random(1)
    for _ in range(200):
        ranked = rank([("a", 10), ("b", 20)], {}, params=NO_EXPLORE, now=NOW, rng=rng)
        assert not ranked[0].explored
    always = RoutingParams(exploration=0.5)
    for _ in range(200):
        ranked = rank([("a", 10), ("b", 20)], {}, params=always, now=NOW, rng=rng, avoid="b")
        assert names(ranked) == ["a", "b"]


def test_the_avoided_provider_goes_last_even_when_best():
    ranked = rank(
        [("best", 10), ("other", 90), ("third", 80)],
        {"best": stats(100, 95)},
        params=NO_EXPLORE,
        now=NOW,
        avoid="best",
    )
    assert names(ranked) == ["third", "other", "best"]


def test_weights_halve_every_half_life():
    assert decay(0, 3600) == 1.0
    assert decay(3600, 3600) == pytest.approx(0.5)
    assert decay(-5, 3600) == 1.0  # a result from the future weighs as new
    old = stats(100, 100, at=NOW)
    later = old.at(NOW + timedelta(hours=2), 3600)
    assert later.rented == pytest.approx(25) and later.delivered == pytest.approx(25)
    assert old.at(NOW - timedelta(hours=1), 3600) is old  # never rejuvenated


def test_recent_failures_outweigh_old_successes():
    half_life = 3600.0
    good_days = [Outcome("p", "wa", "GB", NOW + timedelta(minutes=i), True, 30.0) for i in range(100)]
    bad_now = [Outcome("p", "wa", "GB", NOW + timedelta(hours=6, minutes=i), False) for i in range(20)]
    folded = apply_outcomes({}, good_days + bad_now, half_life)[("p", "wa", "GB")]
    assert folded.rented_total == 120 and folded.delivered_total == 100
    rate, _ = smoothed_rate(
        folded, RoutingParams(half_life_s=half_life), NOW + timedelta(hours=6, minutes=20)
    )
    assert rate < 0.3  # 100 of 120 delivered, but the recent 20 did not


def test_folding_out_of_order_gives_the_same_result():
    half_life = 1800.0
    outcomes = [
        Outcome("p", "wa", "GB", NOW + timedelta(minutes=7 * i), i % 3 != 0, 10.0 * i if i % 3 else None)
        for i in range(30)
    ]
    in_order = apply_outcomes({}, outcomes, half_life)[("p", "wa", "GB")]
    shuffled = list(outcomes)
    random.Random(3).shuffle(shuffled)
    mixed = apply_outcomes({}, shuffled, half_life)[("p", "wa", "GB")]
    at = NOW + timedelta(hours=5)
    a, b = in_order.at(at, half_life), mixed.at(at, half_life)
    assert a.rented == pytest.approx(b.rented)
    assert a.delivered == pytest.approx(b.delivered)
    assert a.first_code_seconds == pytest.approx(b.first_code_seconds)
    assert a.mean_first_code_seconds == pytest.approx(b.mean_first_code_seconds)
