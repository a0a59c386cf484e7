"""An in-process provider that behaves like a real one, deterministically.

Used for the default local shop, demos, the simulation tests and the benchmarks, and (served
over HTTP by another module) as a stand-in SMS-Activate server. Everything it does follows
from a seed, the calls made and an injected clock:

* the catalogue comes from its own RNG (``seed:catalog``), so it never depends on traffic;
* each rental draws its number, codes and code delays from an RNG of its own
  (``seed:rental:N`` for the N-th rental), so polling more or less often never changes them;
* fault rolls come from a third RNG (``seed:faults``), one draw per roll whether or not the
  fault is switched on, so turning a knob does not reshuffle the numbers that follow.

Time is lazy: a code "arrives" when ``clock.now()`` reaches its due time and an activation
expires when the clock passes ``expires_at``; nothing runs in the background. Billing follows
SMS-Activate: the cost is held from the balance at rent, returned on cancel or expiry without
a code, kept once a code arrived (cancel after a code finishes the activation instead).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.catalogue_data import COUNTRIES, COUNTRIES_BY_CODE, SERVICES, SERVICES_BY_CODE
from core.clock import Clock, SystemClock
from core.providers.base import (
    ActivationState,
    ActivationStatus,
    Balance,
    Capabilities,
    Offer,
    Rental,
    RentRequest,
    SmsMessage,
)
from core.providers.errors import (
    ActivationNotFound,
    AlreadyClosed,
    BadService,
    BusinessError,
    EarlyCancelDenied,
    InsufficientProviderBalance,
    NotSupported,
    OutcomeUnknown,
    OutOfStock,
    PriceTooHigh,
    ProviderUnavailable,
)

OPEN_STATES = frozenset({ActivationState.WAITING, ActivationState.CODE})
DEFAULT_CODE_DELAY_S: tuple[float, float] = (5.0, 45.0)
DEFAULT_BALANCE = 10**9  # minor units: enough for millions of benchmark rentals
# A long-running demo server must not grow forever: the call log keeps its newest entries,
# and closed activations are forgotten a while after they closed.
MAX_CALLS_KEPT = 100_000
CLOSED_RETENTION_S = 86_400.0
_PRUNE_EVERY = 1024  # rentals

# Typical base cost per service (US cents) and a price level per country; the seed jitters
# both. Unlisted services cost 25, unlisted countries use factor 1.0.
_BASE_COST = {
    "whatsapp": 60,
    "telegram": 70,
    "google": 35,
    "facebook": 25,
    "instagram": 20,
    "tiktok": 20,
    "openai": 45,
    "twitter": 15,
    "discord": 15,
    "microsoft": 20,
    "apple": 35,
    "amazon": 25,
    "uber": 20,
    "tinder": 30,
    "snapchat": 15,
    "viber": 12,
    "wechat": 80,
    "signal": 30,
    "paypal": 40,
    "linkedin": 25,
    "netflix": 12,
    "airbnb": 25,
    "yahoo": 10,
    "line": 30,
    "steam": 15,
    "coinbase": 45,
    "binance": 40,
    "other": 10,
}
_COUNTRY_FACTOR = {
    "US": 2.2,
    "CA": 2.0,
    "GB": 1.8,
    "DE": 2.0,
    "FR": 1.8,
    "NL": 1.9,
    "SE": 1.9,
    "IL": 1.6,
    "ES": 1.4,
    "IT": 1.4,
    "PT": 1.3,
    "PL": 1.0,
    "TR": 0.8,
    "GE": 0.7,
    "UA": 0.6,
    "KZ": 0.6,
    "BR": 0.7,
    "MX": 0.7,
    "AR": 0.6,
    "CO": 0.6,
    "ZA": 0.7,
    "MY": 0.6,
    "TH": 0.5,
    "EG": 0.4,
    "NG": 0.4,
    "KE": 0.4,
    "IN": 0.4,
    "ID": 0.3,
    "PH": 0.35,
    "VN": 0.35,
}
_ALWAYS_STOCKED_SERVICES = 10  # the most popular services…
_ALWAYS_STOCKED_COUNTRIES = 10  # …in the first countries never start out of stock

_UNSET = object()


@dataclass
class SimActivation:
    """One rental as the simulated upstream sees it (tests may read it freely)."""

    id: str
    service: str
    country: str
    phone: str
    cost: int
    created_at: datetime
    expires_at: datetime
    idempotency_key: str
    rng: random.Random = field(repr=False)
    state: ActivationState = ActivationState.WAITING
    messages: list[SmsMessage] = field(default_factory=list)
    pending: list[tuple[datetime, str]] = field(default_factory=list)  # (due, code), sorted
    closed_at: datetime | None = None
    refunded: bool = False  # the held cost went back to the balance (cancel/expiry, no code)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


class SimulatorProvider:
    def __init__(
        self,
        *,
        seed: int = 1,
        clock: Clock | None = None,
        name: str = "simulator",
        latency_s: float = 0.0,
        transient_error_rate: float = 0.0,
        outcome_unknown_rate: float = 0.0,
        out_of_stock: bool | Iterable[tuple[str, str]] = False,
        early_cancel_window_s: float = 0.0,
        code_delay_s: tuple[float, float] | None = DEFAULT_CODE_DELAY_S,
        ttl_s: float = 1200.0,
        another_code: bool = True,
        balance: int = DEFAULT_BALANCE,
        currency: str = "USD",
    ) -> None:
        self.name = name
        self.seed = seed
        self.clock: Clock = clock or SystemClock()
        self.currency = currency
        self.capabilities = Capabilities(idempotent_rent=True, batch_status=True, another_code=another_code)
        self.latency_s = 0.0
        self.transient_error_rate = 0.0
        self.outcome_unknown_rate = 0.0
        self.out_of_stock: bool | frozenset[tuple[str, str]] = False
        self.early_cancel_window_s = 0.0
        self.code_delay_s: tuple[float, float] | None = None
        self.ttl_s = 1200.0
        self.set_faults(
            latency_s=latency_s,
            transient_error_rate=transient_error_rate,
            outcome_unknown_rate=outcome_unknown_rate,
            out_of_stock=out_of_stock,
            early_cancel_window_s=early_cancel_window_s,
            code_delay_s=code_delay_s,
            ttl_s=ttl_s,
        )
        self.offers: dict[tuple[str, str], Offer] = _generate_catalogue(seed)
        self.activations: dict[str, SimActivation] = {}
        self.calls: list[tuple[str, ...]] = []
        self._by_key: dict[str, SimActivation] = {}
        self._open: dict[str, SimActivation] = {}
        self._faults = random.Random(f"{seed}:faults")
        self._serial = itertools.count(1)
        # Activation ids start with the construction time, so a shop restarted on the same
        # database never sees an id it already owns (still deterministic under a fake clock).
        self._boot = int(self.clock.now().timestamp())
        self._balance = int(balance)

    # --- knobs ----------------------------------------------------------------------

    def set_faults(
        self,
        *,
        latency_s: float | object = _UNSET,
        transient_error_rate: float | object = _UNSET,
        outcome_unknown_rate: float | object = _UNSET,
        out_of_stock: bool | Iterable[tuple[str, str]] | object = _UNSET,
        early_cancel_window_s: float | object = _UNSET,
        code_delay_s: tuple[float, float] | None | object = _UNSET,
        ttl_s: float | object = _UNSET,
    ) -> None:
        """Change any knob; those not named keep their value. ``code_delay_s=None``: never."""
        if latency_s is not _UNSET:
            self.latency_s = _non_negative("latency_s", latency_s)
        if transient_error_rate is not _UNSET:
            self.transient_error_rate = _rate("transient_error_rate", transient_error_rate)
        if outcome_unknown_rate is not _UNSET:
            self.outcome_unknown_rate = _rate("outcome_unknown_rate", outcome_unknown_rate)
        if out_of_stock is not _UNSET:
            if isinstance(out_of_stock, bool):
                self.out_of_stock = out_of_stock
            elif isinstance(out_of_stock, Iterable):
                self.out_of_stock = frozenset((str(s), str(c)) for s, c in out_of_stock)
            else:
                raise TypeError("out_of_stock: a bool or (service, country) pairs")
        if early_cancel_window_s is not _UNSET:
            self.early_cancel_window_s = _non_negative("early_cancel_window_s", early_cancel_window_s)
        if code_delay_s is not _UNSET:
            if code_delay_s is None:
                self.code_delay_s = None
            else:
                if not isinstance(code_delay_s, Iterable):
                    raise TypeError("code_delay_s: a (min, max) pair or None")
                low, high = (_non_negative("code_delay_s", v) for v in code_delay_s)
                if high < low:
                    raise ValueError("code_delay_s: (min, max) with min <= max")
                self.code_delay_s = (low, high)
        if ttl_s is not _UNSET:
            ttl = _non_negative("ttl_s", ttl_s)
            if ttl <= 0:
                raise ValueError("ttl_s must be greater than zero")
            self.ttl_s = ttl

    def set_offer(
        self, service: str, country: str, *, cost: int | None = None, stock: int | None = None
    ) -> Offer:
        """Change (or add) one catalogue entry, e.g. to make one provider the cheapest."""
        held = self.offers.get((service, country))
        offer = Offer(
            service=service,
            country=country,
            cost=int(cost if cost is not None else (held.cost if held else 50)),
            stock=int(stock if stock is not None else (held.stock if held else 100)),
        )
        self.offers[(service, country)] = offer
        return offer

    def deliver_code(
        self, activation_id: str, code: str | None = None, text: str | None = None
    ) -> SmsMessage:
        """Make an SMS arrive now (test control; not part of the port)."""
        self._log("deliver_code", activation_id)
        act = self._get(activation_id)
        now = self.clock.now()
        self._refresh(act, now)
        if not act.is_open:
            raise AlreadyClosed(f"activation {activation_id} is {act.state}", provider=self.name)
        if code is None:
            code = _code(act.rng)
        return self._arrive(act, code, now, text)

    # --- the Provider port ----------------------------------------------------------

    async def catalogue(self) -> list[Offer]:
        self._log("catalogue")
        await self._network()
        return [
            Offer(o.service, o.country, o.cost, 0) if self._knocked_out(o.service, o.country) else o
            for _, o in sorted(self.offers.items())
        ]

    async def rent(self, request: RentRequest) -> Rental:
        self._log("rent", request.service, request.country, request.idempotency_key)
        await self._network()
        unknown_roll = self._faults.random()
        held = self._by_key.get(request.idempotency_key)
        if held is not None:
            if (held.service, held.country) != (request.service, request.country):
                raise BusinessError("idempotency key reused for a different request", provider=self.name)
            return self._rental(held)
        if request.service not in SERVICES_BY_CODE:
            raise BadService(f"unknown service {request.service!r}", provider=self.name)
        if request.country not in COUNTRIES_BY_CODE:
            raise BadService(f"unknown country {request.country!r}", provider=self.name)
        offer = self.offers.get((request.service, request.country))
        if offer is None or offer.stock <= 0 or self._knocked_out(request.service, request.country):
            raise OutOfStock(f"no numbers for {request.service}/{request.country}", provider=self.name)
        if offer.cost > request.max_cost:
            raise PriceTooHigh(
                f"cost {offer.cost} is above max {request.max_cost}",
                min_price=offer.cost,
                provider=self.name,
            )
        if self._balance < offer.cost:
            raise InsufficientProviderBalance("simulated balance too low", provider=self.name)
        act = self._create(request, offer)
        if unknown_roll < self.outcome_unknown_rate:
            raise OutcomeUnknown("simulated lost reply after the number was rented", provider=self.name)
        return self._rental(act)

    async def status(self, activation_id: str) -> ActivationStatus:
        self._log("status", activation_id)
        await self._network()
        act = self._get(activation_id)
        self._refresh(act, self.clock.now())
        return _status(act)

    async def batch_status(self, activation_ids: list[str]) -> dict[str, ActivationStatus]:
        self._log("batch_status", *activation_ids)
        await self._network()
        now = self.clock.now()
        out: dict[str, ActivationStatus] = {}
        for aid in activation_ids:
            act = self.activations.get(aid)
            if act is not None:
                self._refresh(act, now)
                out[aid] = _status(act)
        return out

    async def cancel(self, activation_id: str) -> None:
        self._log("cancel", activation_id)
        await self._network()
        act = self._get(activation_id)
        now = self.clock.now()
        self._refresh(act, now)
        if not act.is_open:
            raise AlreadyClosed(f"activation {activation_id} is {act.state}", provider=self.name)
        if act.state == ActivationState.CODE:
            # SMS-Activate: a code was delivered, so the activation is billed, not cancelled.
            self._close(act, ActivationState.FINISHED, now)
            raise AlreadyClosed(
                f"activation {activation_id} received a code; finished instead", provider=self.name
            )
        retry_at = act.created_at + timedelta(seconds=self.early_cancel_window_s)
        if now < retry_at:
            raise EarlyCancelDenied("cancel denied this early", retry_at=retry_at, provider=self.name)
        self._close(act, ActivationState.CANCELLED, now)

    async def finish(self, activation_id: str) -> None:
        self._log("finish", activation_id)
        await self._network()
        act = self._get(activation_id)
        now = self.clock.now()
        self._refresh(act, now)
        if not act.is_open:
            raise AlreadyClosed(f"activation {activation_id} is {act.state}", provider=self.name)
        self._close(act, ActivationState.FINISHED, now)

    async def request_another_code(self, activation_id: str) -> None:
        self._log("another_code", activation_id)
        await self._network()
        if not self.capabilities.another_code:
            raise NotSupported("another code is not offered", provider=self.name)
        act = self._get(activation_id)
        now = self.clock.now()
        self._refresh(act, now)
        if not act.is_open:
            raise AlreadyClosed(f"activation {activation_id} is {act.state}", provider=self.name)
        self._schedule_code(act, now)

    async def active_activations(self) -> list[Rental]:
        self._log("active_activations")
        await self._network()
        now = self.clock.now()
        for act in list(self._open.values()):
            self._refresh(act, now)
        return [self._rental(a) for a in self._open.values()]

    async def balance(self) -> Balance:
        self._log("balance")
        await self._network()
        return Balance(amount=self._balance, currency=self.currency)

    async def aclose(self) -> None:
        return None

    # --- internals ------------------------------------------------------------------

    async def _network(self) -> None:
        """What every upstream call risks: latency, then maybe a transient failure."""
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        if self._faults.random() < self.transient_error_rate:
            raise ProviderUnavailable("simulated transient failure", provider=self.name)

    def _knocked_out(self, service: str, country: str) -> bool:
        if isinstance(self.out_of_stock, bool):
            return self.out_of_stock
        return (service, country) in self.out_of_stock

    def _log(self, *entry: str) -> None:
        self.calls.append(entry)
        if len(self.calls) > MAX_CALLS_KEPT:
            del self.calls[: MAX_CALLS_KEPT // 2]

    def _prune(self, now: datetime) -> None:
        horizon = now - timedelta(seconds=CLOSED_RETENTION_S)
        stale = [a for a in self.activations.values() if a.closed_at is not None and a.closed_at < horizon]
        for act in stale:
            del self.activations[act.id]
            if self._by_key.get(act.idempotency_key) is act:
                del self._by_key[act.idempotency_key]

    def _get(self, activation_id: str) -> SimActivation:
        act = self.activations.get(activation_id)
        if act is None:
            raise ActivationNotFound(f"no activation {activation_id}", provider=self.name)
        return act

    def _create(self, request: RentRequest, offer: Offer) -> SimActivation:
        serial = next(self._serial)
        rng = random.Random(f"{self.seed}:rental:{serial}")
        now = self.clock.now()
        if serial % _PRUNE_EVERY == 0:
            self._prune(now)
        act = SimActivation(
            id=f"{self._boot}{serial:06d}",
            service=request.service,
            country=request.country,
            phone=_phone(rng, request.country),
            cost=offer.cost,
            created_at=now,
            expires_at=now + timedelta(seconds=self.ttl_s),
            idempotency_key=request.idempotency_key,
            rng=rng,
        )
        self._schedule_code(act, now)
        self._balance -= offer.cost
        self.activations[act.id] = act
        self._by_key[request.idempotency_key] = act
        self._open[act.id] = act
        return act

    def _schedule_code(self, act: SimActivation, now: datetime) -> None:
        if self.code_delay_s is None:
            return
        low, high = self.code_delay_s
        due = now + timedelta(seconds=act.rng.uniform(low, high))
        bisect.insort(act.pending, (due, _code(act.rng)))

    def _refresh(self, act: SimActivation, now: datetime) -> None:
        """Let time act: deliver codes that fell due, expire the activation at its deadline."""
        if not act.is_open:
            return
        horizon = min(now, act.expires_at)
        while act.pending and act.pending[0][0] <= horizon:
            due, code = act.pending.pop(0)
            self._arrive(act, code, due, None)
        if now >= act.expires_at:
            final = ActivationState.FINISHED if act.messages else ActivationState.EXPIRED
            self._close(act, final, act.expires_at)

    def _arrive(self, act: SimActivation, code: str, at: datetime, text: str | None) -> SmsMessage:
        service = SERVICES_BY_CODE.get(act.service)
        label = service.name if service else act.service
        message = SmsMessage(
            message_id=f"{act.id}:{len(act.messages) + 1}",
            code=code,
            text=text if text is not None else f"Your {label} code is {code}. Do not share it.",
            received_at=at,
        )
        act.messages.append(message)
        act.state = ActivationState.CODE
        return message

    def _close(self, act: SimActivation, state: ActivationState, at: datetime) -> None:
        act.state = state
        act.closed_at = at
        act.pending.clear()
        self._open.pop(act.id, None)
        if not act.messages and not act.refunded and state != ActivationState.FINISHED:
            self._balance += act.cost
            act.refunded = True

    def _rental(self, act: SimActivation) -> Rental:
        return Rental(
            activation_id=act.id,
            phone=act.phone,
            cost=act.cost,
            expires_at=act.expires_at,
            service=act.service,
            country=act.country,
            created_at=act.created_at,
            can_request_another=self.capabilities.another_code,
        )


def _status(act: SimActivation) -> ActivationStatus:
    return ActivationStatus(activation_id=act.id, state=act.state, messages=tuple(act.messages))


def _code(rng: random.Random) -> str:
    return f"{rng.randrange(10**6):06d}"


def _phone(rng: random.Random, country: str) -> str:
    """E.164 with the country's calling code: ``+`` then at most 13 digits."""
    dial = COUNTRIES_BY_CODE[country].dial_code
    rest = "".join(str(rng.randrange(10)) for _ in range(9 if len(dial) <= 2 else 8))
    return f"+{dial}{rng.randrange(1, 10)}{rest}"


def _generate_catalogue(seed: int) -> dict[tuple[str, str], Offer]:
    rng = random.Random(f"{seed}:catalog")  # the old spelling keeps every seed's catalogue
    stocked_services = {s.code for s in SERVICES[:_ALWAYS_STOCKED_SERVICES]}
    stocked_countries = {c.code for c in COUNTRIES[:_ALWAYS_STOCKED_COUNTRIES]}
    out: dict[tuple[str, str], Offer] = {}
    for service in SERVICES:
        base = _BASE_COST.get(service.code, 25)
        for country in COUNTRIES:
            factor = _COUNTRY_FACTOR.get(country.code, 1.0)
            cost = max(5, round(base * factor * rng.uniform(0.8, 1.25)))
            stock = rng.randint(3, 4000)
            empty = rng.random() < 0.06
            if empty and not (service.code in stocked_services and country.code in stocked_countries):
                stock = 0
            out[(service.code, country.code)] = Offer(service.code, country.code, cost, stock)
    return out


def _rate(name: str, value: object) -> float:
    rate = float(value)  # type: ignore[arg-type]
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")
    return rate


def _non_negative(name: str, value: object) -> float:
    number = float(value)  # type: ignore[arg-type]
    if number < 0:
        raise ValueError(f"{name} cannot be negative")
    return number
