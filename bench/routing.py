"""Routing by delivered codes against cheapest-first and an oracle, in a seeded simulation.

``python -m bench.routing [--purchases N] [--seed S]``

Three simulated providers sell one service and country:

* ``cheap``   — the lowest price, but few of its numbers ever receive a code;
* ``steady``  — the dearest, reliable, and short of stock (a few numbers an hour);
* ``falling`` — mid-priced and reliable until halfway through, when its success rate drops.

Every purchase rents one number (failing over only when a provider is out of stock) and the
spend is what the numbers rented cost — a number without a code still cost the buyer their
time and the shop its refund, which is the point of routing by delivered codes. A code arrives
(or not) as the provider's true rate at rent time says; the result becomes known when the
order closes (at the code, or at the 15-minute deadline) and is folded into the statistics
every 30 s with the same lag as the shop's ticker, through the real ``core.delivery_stats``
arithmetic and the real ``core.routing.rank`` with the default settings and a seeded
exploration stream. The same random draws decide every strategy's outcomes.

Strategies: cheapest-first (the shop before routing), the new routing, and an oracle that
knows every provider's true rate at every moment (and never explores). The last line is one
JSON object with ``codes_per_spend`` of each, ``ratio_to_oracle`` (goal ≥ 0.9) and
``gain_over_cheapest`` (goal ≥ 1.2).
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from core.config import Settings
from core.delivery_stats import Outcome, Stats, apply_outcomes
from core.routing import RoutingParams, rank

SERVICE, COUNTRY = "whatsapp", "GB"
START = datetime(2026, 1, 1, tzinfo=UTC)
ARRIVAL_S = 20.0  # one purchase every 20 s: 20,000 purchases is about 4.6 days
DEADLINE_S = 900.0  # a number without a code closes at its deadline
FOLD_EVERY_S = 30.0  # scheduler.tickers.DELIVERY_STATS_EVERY_S


@dataclass(frozen=True)
class SimProvider:
    name: str
    cost: int  # minor units
    rate_before: float
    rate_after: float
    stock_per_hour: int | None  # None: never runs out

    def rate(self, i: int, n: int) -> float:
        return self.rate_before if i < n // 2 else self.rate_after


PROVIDERS = (
    SimProvider("cheap", 40, 0.30, 0.30, None),
    SimProvider("falling", 55, 0.80, 0.15, None),
    SimProvider("steady", 70, 0.85, 0.85, 25),
)


@dataclass
class Tally:
    rentals: int = 0
    codes: int = 0
    spend: int = 0
    by_provider: dict[str, int] = field(default_factory=dict)
    halves: list[list[int]] = field(default_factory=lambda: [[0, 0], [0, 0]])  # [codes, spend]

    def codes_per_spend(self) -> float:
        return self.codes / self.spend if self.spend else 0.0


Chooser = Callable[[int, datetime, list[SimProvider]], list[SimProvider]]


def simulate(
    n: int, seed: int, choose: Chooser, on_outcome: Callable[[Outcome], None] | None = None
) -> Tally:
    draws = random.Random(seed)
    tally = Tally()
    stock: dict[str, int] = {}
    hour = -1
    for i in range(n):
        now = START + timedelta(seconds=i * ARRIVAL_S)
        u, v = draws.random(), draws.random()
        if int(i * ARRIVAL_S // 3600) != hour:
            hour = int(i * ARRIVAL_S // 3600)
            stock = {p.name: p.stock_per_hour for p in PROVIDERS if p.stock_per_hour is not None}
        offers = [p for p in PROVIDERS if stock.get(p.name, 1) > 0]
        for p in choose(i, now, offers):
            if p.name in stock:
                stock[p.name] -= 1
            delivered = u < p.rate(i, n)
            tally.rentals += 1
            tally.spend += p.cost
            tally.codes += delivered
            half = tally.halves[0 if i < n // 2 else 1]
            half[0] += delivered
            half[1] += p.cost
            tally.by_provider[p.name] = tally.by_provider.get(p.name, 0) + 1
            if on_outcome is not None:
                after = 20.0 + 100.0 * v if delivered else DEADLINE_S
                on_outcome(
                    Outcome(
                        p.name,
                        SERVICE,
                        COUNTRY,
                        now + timedelta(seconds=after),
                        delivered,
                        after if delivered else None,
                    )
                )
            break
    return tally


def cheapest_first(i: int, now: datetime, offers: list[SimProvider]) -> list[SimProvider]:
    return sorted(offers, key=lambda p: p.cost)


def oracle(n: int) -> Chooser:
    def choose(i: int, now: datetime, offers: list[SimProvider]) -> list[SimProvider]:
        return sorted(offers, key=lambda p: p.cost / max(p.rate(i, n), 1e-9))

    return choose


class Routed:
    """The new routing: ``core.routing.rank`` over statistics folded with
    ``core.delivery_stats.apply_outcomes`` on the ticker's schedule."""

    def __init__(self, settings: Settings, seed: int) -> None:
        self.params = RoutingParams.from_settings(settings)
        self.lag = timedelta(seconds=settings.ROUTING_FOLD_LAG_SECONDS)
        self.rng = random.Random(seed)
        self.stats: dict[tuple[str, str, str], Stats] = {}
        self.closing: list[tuple[datetime, int, Outcome]] = []  # not yet folded, by closed_at
        self.seq = 0
        self.next_fold = START
        self.explored = 0

    def record(self, outcome: Outcome) -> None:
        self.seq += 1
        heapq.heappush(self.closing, (outcome.closed_at, self.seq, outcome))

    def _fold_until(self, now: datetime) -> None:
        while self.next_fold <= now:
            cutoff = self.next_fold - self.lag
            batch = []
            while self.closing and self.closing[0][0] <= cutoff:
                batch.append(heapq.heappop(self.closing)[2])
            if batch:
                self.stats.update(apply_outcomes(self.stats, batch, self.params.half_life_s))
            self.next_fold += timedelta(seconds=FOLD_EVERY_S)

    def choose(self, i: int, now: datetime, offers: list[SimProvider]) -> list[SimProvider]:
        self._fold_until(now)
        by_name = {p.name: p for p in offers}
        pair = {k[0]: s for k, s in self.stats.items() if k[1:] == (SERVICE, COUNTRY)}
        ranked = rank(
            [(p.name, p.cost) for p in sorted(offers, key=lambda p: p.cost)],
            pair,
            params=self.params,
            now=now,
            rng=self.rng,
        )
        if ranked and ranked[0].explored:
            self.explored += 1
        return [by_name[s.provider] for s in ranked]


def run(n: int, seed: int) -> dict[str, object]:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # _env_file is BaseSettings.__init__'s, not a field
    base = simulate(n, seed, cheapest_first)
    best = simulate(n, seed, oracle(n))
    routed = Routed(settings, seed + 1)
    new = simulate(n, seed, routed.choose, routed.record)

    def summary(t: Tally) -> dict[str, object]:
        return {
            "codes": t.codes,
            "rentals": t.rentals,
            "spend": t.spend,
            "codes_per_100_spend": round(100 * t.codes_per_spend(), 4),
            "first_half_codes_per_100": round(100 * t.halves[0][0] / max(1, t.halves[0][1]), 4),
            "second_half_codes_per_100": round(100 * t.halves[1][0] / max(1, t.halves[1][1]), 4),
            "rentals_by_provider": dict(sorted(t.by_provider.items())),
        }

    return {
        "bench": "routing",
        "purchases": n,
        "seed": seed,
        "providers": [
            {
                "name": p.name,
                "cost": p.cost,
                "rate": [p.rate_before, p.rate_after],
                "stock_per_hour": p.stock_per_hour,
            }
            for p in PROVIDERS
        ],
        "cheapest_first": summary(base),
        "routing": {**summary(new), "explored": routed.explored},
        "oracle": summary(best),
        "ratio_to_oracle": round(new.codes_per_spend() / best.codes_per_spend(), 4),
        "gain_over_cheapest": round(new.codes_per_spend() / base.codes_per_spend(), 4),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__.split("\n")[0])
    parser.add_argument("--purchases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args(argv)
    result = run(args.purchases, args.seed)
    for name in ("cheapest_first", "routing", "oracle"):
        part = result[name]
        assert isinstance(part, dict)
        print(
            f"{name:15} codes per 100 spent: {part['codes_per_100_spend']:.3f} "
            f"(first half {part['first_half_codes_per_100']:.3f}, "
            f"second {part['second_half_codes_per_100']:.3f}) "
            f"rentals {part['rentals_by_provider']}",
            flush=True,
        )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
