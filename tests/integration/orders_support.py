"""A scripted provider and a small shop fixture for order-service tests.

The scripted provider is deliberately dumb and fully controllable from the test: which rent
attempts fail and how, which activations have which messages, whether cancels are denied.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import insert

from core import ledger
from core.backoff import Backoff
from core.clock import FakeClock
from core.config import Settings
from core.db.engine import Database
from core.db.tables import countries, offers, quotes, services
from core.invariants import check_invariants
from core.orders import OrderService
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
from core.providers.errors import ActivationNotFound, AlreadyClosed, OutcomeUnknown
from core.users import get_or_create_user


class AppliedButUnknown(OutcomeUnknown):
    """Script marker: the rental happens upstream, then the answer is lost."""


class Crash(BaseException):
    """Script marker: the process dies mid-call (not an Exception, so nothing catches it)."""


class CrashAfterApply(Crash):
    """Script marker: the rental happens upstream, then the process dies before phase 3."""


@dataclass
class Activation:
    rental: Rental
    key: str
    state: ActivationState = ActivationState.WAITING
    messages: list[SmsMessage] = field(default_factory=list)


class ScriptedProvider:
    def __init__(
        self, name: str, clock: FakeClock, *, idempotent: bool = False, batch: bool = True, cost: int = 50
    ) -> None:
        self.name = name
        self.clock = clock
        self.cost = cost
        self.capabilities = Capabilities(idempotent_rent=idempotent, batch_status=batch, another_code=True)
        self.rent_script: list[BaseException | None] = []
        self.cancel_script: list[BaseException | None] = []
        self.activations: dict[str, Activation] = {}
        self.calls: list[tuple[str, str]] = []
        # Set to an unset Event to make cancels wait until the test sets it.
        self.cancel_gate: asyncio.Event | None = None
        self.cancel_started = asyncio.Event()
        self._ids = itertools.count(1000)

    def _new(self, req: RentRequest) -> Rental:
        aid = f"{self.name}-{next(self._ids)}"
        now = self.clock.now()
        rental = Rental(
            aid,
            f"+4470000{aid[-4:]}",
            self.cost,
            now + timedelta(minutes=20),
            service=req.service,
            country=req.country,
            created_at=now,
            can_request_another=True,
        )
        self.activations[aid] = Activation(rental, req.idempotency_key)
        return rental

    async def catalogue(self) -> list[Offer]:
        return []

    async def rent(self, req: RentRequest) -> Rental:
        self.calls.append(("rent", req.idempotency_key))
        if self.capabilities.idempotent_rent:
            for act in self.activations.values():
                if act.key == req.idempotency_key:
                    return act.rental
        outcome = self.rent_script.pop(0) if self.rent_script else None
        if isinstance(outcome, (AppliedButUnknown, CrashAfterApply)):
            self._new(req)
            raise outcome
        if outcome is not None:
            raise outcome
        return self._new(req)

    def deliver(self, activation_id: str, code: str, text: str | None = None) -> None:
        act = self.activations[activation_id]
        act.messages.append(
            SmsMessage(f"m{len(act.messages)}", code, text or f"Your code {code}", self.clock.now())
        )
        act.state = ActivationState.CODE

    def _status(self, aid: str) -> ActivationStatus:
        act = self.activations.get(aid)
        if act is None:
            raise ActivationNotFound(aid)
        return ActivationStatus(aid, act.state, tuple(act.messages))

    async def status(self, activation_id: str) -> ActivationStatus:
        self.calls.append(("status", activation_id))
        return self._status(activation_id)

    async def batch_status(self, ids: list[str]) -> dict[str, ActivationStatus]:
        self.calls.append(("batch_status", ",".join(ids)))
        return {i: self._status(i) for i in ids if i in self.activations}

    async def cancel(self, activation_id: str) -> None:
        self.calls.append(("cancel", activation_id))
        self.cancel_started.set()
        if self.cancel_gate is not None:
            await self.cancel_gate.wait()
        outcome = self.cancel_script.pop(0) if self.cancel_script else None
        if outcome is not None:
            raise outcome
        act = self.activations[activation_id]
        if act.state in (ActivationState.CANCELLED, ActivationState.FINISHED):
            raise AlreadyClosed(activation_id)
        act.state = ActivationState.CANCELLED

    async def finish(self, activation_id: str) -> None:
        self.calls.append(("finish", activation_id))
        self.activations[activation_id].state = ActivationState.FINISHED

    async def request_another_code(self, activation_id: str) -> None:
        self.calls.append(("another", activation_id))

    async def active_activations(self) -> list[Rental]:
        return [
            a.rental
            for a in self.activations.values()
            if a.state in (ActivationState.WAITING, ActivationState.CODE)
        ]

    async def balance(self) -> Balance:
        return Balance(10_000, "USD")

    async def aclose(self) -> None:
        return None

    def rents(self) -> int:
        return len(self.activations)


class Shop:
    """An order service over scripted providers, with helpers to make users and quotes."""

    def __init__(
        self, db: Database, clock: FakeClock, providers: dict[str, ScriptedProvider], **settings: Any
    ) -> None:
        self.db = db
        self.clock = clock
        self.providers = providers
        self.settings = Settings(**settings)
        # Retry delays without jitter, so tests can name the exact retry time.
        self.orders = OrderService(
            db, clock, providers, self.settings, upstream_backoff=Backoff(base=15, cap=600, jitter=False)
        )
        self._quotes = itertools.count(1)

    async def setup_catalogue(self, price_cost: dict[str, int] | None = None, stock: int = 10) -> None:
        now = self.clock.now()
        async with self.db.begin() as conn:
            await conn.execute(insert(services).values(code="whatsapp", name="WhatsApp", popularity=100))
            await conn.execute(insert(countries).values(code="GB", name="United Kingdom"))
            for name, prov in self.providers.items():
                cost = (price_cost or {}).get(name, prov.cost)
                await conn.execute(
                    insert(offers).values(
                        provider=name,
                        service="whatsapp",
                        country="GB",
                        cost=cost,
                        stock=stock,
                        updated_at=now,
                    )
                )

    async def user(self, telegram_id: int, funds: int = 0) -> Any:
        async with self.db.begin() as conn:
            user = await get_or_create_user(conn, telegram_id=telegram_id, now=self.clock.now())
            if funds:
                await ledger.post_transfer(
                    conn,
                    id=ledger.new_id(),
                    debit=await ledger.system_account(conn, ledger.TOPUPS),
                    credit=user.wallet_account_id,
                    amount=funds,
                    code="topup",
                    now=self.clock.now(),
                )
        return user

    async def quote(self, user_id: int, price: int = 100, ttl: int = 600) -> str:
        qid = f"q{next(self._quotes)}-{user_id}"
        now = self.clock.now()
        async with self.db.begin() as conn:
            await conn.execute(
                insert(quotes).values(
                    id=qid,
                    user_id=user_id,
                    service="whatsapp",
                    country="GB",
                    price=price,
                    expires_at=now + timedelta(seconds=ttl),
                    created_at=now,
                )
            )
        return qid

    async def available(self, user: Any) -> int:
        async with self.db.read() as conn:
            return (await ledger.balance_of(conn, user.wallet_account_id)).available

    async def wallet(self, user: Any) -> ledger.AccountBalance:
        async with self.db.read() as conn:
            return await ledger.balance_of(conn, user.wallet_account_id)

    async def assert_books_clean(self) -> None:
        await self.orders.drain_background()
        violations = await check_invariants(self.db, self.clock.now())
        assert violations == [], violations
