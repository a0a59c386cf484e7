"""Helpers for the scheduler and reconciliation tests: a provider whose reads can fail on
cue, a core-shaped bundle the jobs accept, and a full dump of every table."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select

from core.db.engine import Database
from core.db.tables import metadata
from core.orders import OrderService
from core.providers.base import ActivationState, ActivationStatus, Balance
from core.providers.errors import AlreadyClosed
from tests.integration.orders_support import ScriptedProvider, Shop


class FlakyProvider(ScriptedProvider):
    """A scripted provider whose status reads, batch reads, listings and balance can fail."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.status_failures: dict[str, BaseException] = {}  # activation id → raised each time
        self.batch_script: list[BaseException | None] = []
        self.list_failure: BaseException | None = None
        self.balance_failure: BaseException | None = None
        self.balance_amount = 10_000

    async def status(self, activation_id: str) -> ActivationStatus:
        self.calls.append(("status", activation_id))
        failure = self.status_failures.get(activation_id)
        if failure is not None:
            raise failure
        return self._status(activation_id)

    async def batch_status(self, ids: list[str]) -> dict[str, ActivationStatus]:
        self.calls.append(("batch_status", ",".join(ids)))
        outcome = self.batch_script.pop(0) if self.batch_script else None
        if outcome is not None:
            raise outcome
        return {i: self._status(i) for i in ids if i in self.activations}

    async def finish(self, activation_id: str) -> None:
        self.calls.append(("finish", activation_id))
        act = self.activations[activation_id]
        if act.state not in (ActivationState.WAITING, ActivationState.CODE):
            raise AlreadyClosed(activation_id)
        act.state = ActivationState.FINISHED

    async def active_activations(self) -> list[Any]:
        if self.list_failure is not None:
            raise self.list_failure
        return await super().active_activations()

    async def balance(self) -> Balance:
        if self.balance_failure is not None:
            raise self.balance_failure
        return Balance(self.balance_amount, "USD")

    def close(self, activation_id: str, state: ActivationState) -> None:
        self.activations[activation_id].state = state

    def set_cost(self, activation_id: str, cost: int) -> None:
        act = self.activations[activation_id]
        act.rental = replace(act.rental, cost=cost)

    def calls_of(self, kind: str, activation_id: str | None = None) -> int:
        return sum(1 for c in self.calls if c[0] == kind and (activation_id is None or c[1] == activation_id))


def core_of(shop: Shop, orders: OrderService | None = None, db: Database | None = None) -> Any:
    """What ``scheduler.tickers.ShopJobs`` needs, built from a test shop."""
    return SimpleNamespace(
        db=db or shop.db,
        clock=shop.clock,
        settings=shop.settings,
        providers=shop.providers,
        orders=orders or shop.orders,
    )


async def buy(shop: Shop, user: Any, key: str, price: int = 100) -> Any:
    quote = await shop.quote(user.id, price=price)
    return await shop.orders.purchase(user_id=user.id, quote_id=quote, idempotency_key=key)


async def count(db: Database, table: Any, *where: Any) -> int:
    async with db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with db.read() as conn:
        for table in metadata.sorted_tables:
            rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
            out[table.name] = [tuple(r) for r in rows.all()]
    return out
