"""The code-delivery panel: the simulator's open activations, and "deliver a code now".

In the sandbox the simulator also delivers codes on its own after a random, realistic delay
(they surface when the scheduler polls). The panel is the impatient path: it makes an SMS
arrive upstream at once, then polls that one order through the same core service the poll
ticker uses (``OrderService.poll_orders``) and wakes the notification sender, so the code
shows up in the chat within a moment — through exactly the path a real code takes (capture
the hold, complete the order, outbox row, sender), never by writing to the chat directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from core.app import Core
from core.catalogue_data import COUNTRIES_BY_CODE, SERVICES_BY_CODE
from core.db.tables import orders, users
from core.providers.errors import ProviderError
from core.providers.simulator import SimulatorProvider

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """The activation cannot take a code (unknown, or already closed)."""


@dataclass(frozen=True)
class Delivered:
    activation_id: str
    code: str
    order_id: str | None
    order_status: str | None


class DeliveryPanel:
    def __init__(
        self,
        simulator: SimulatorProvider,
        core: Core,
        *,
        provider_name: str = "simulator",
        on_delivered: Callable[[], None] | None = None,
    ) -> None:
        self.simulator = simulator
        self.core = core
        self.provider_name = provider_name
        self.on_delivered = on_delivered

    async def open_activations(self) -> list[dict[str, Any]]:
        """Open activations, newest first, each with the order that owns it (if any)."""
        now = self.simulator.clock.now()
        acts = [a for a in self.simulator.activations.values() if a.is_open and a.expires_at > now]
        acts.sort(key=lambda a: a.created_at, reverse=True)
        owners = await self._orders_for([a.id for a in acts])
        out = []
        for act in acts:
            order = owners.get(act.id)
            service = SERVICES_BY_CODE.get(act.service)
            country = COUNTRIES_BY_CODE.get(act.country)
            due = next((d for d, _ in act.pending), None)
            out.append(
                {
                    "activation_id": act.id,
                    "service": act.service,
                    "service_name": service.name if service else act.service,
                    "country": act.country,
                    "country_name": country.name if country else act.country,
                    "phone": act.phone,
                    "state": str(act.state),
                    "codes": len(act.messages),
                    "expires_in": max(0, int((act.expires_at - now).total_seconds())),
                    "auto_code_in": None if due is None else max(0, int((due - now).total_seconds())),
                    "order_id": order["id"] if order else None,
                    "order_status": order["status"] if order else None,
                    "telegram_id": order["telegram_id"] if order else None,
                }
            )
        return out

    async def deliver(self, activation_id: str, code: str | None = None) -> Delivered:
        act = self.simulator.activations.get(activation_id)
        if act is None:
            raise DeliveryError(f"no activation {activation_id}")
        try:
            sms = self.simulator.deliver_code(activation_id, code=code)
        except ProviderError as exc:
            raise DeliveryError(str(exc)) from None
        order = (await self._orders_for([activation_id])).get(activation_id)
        status = None
        if order is not None:
            try:
                await self.core.orders.poll_orders([order["id"]])
            except Exception as exc:
                log.warning("sandbox: could not poll order %s at once: %s", order["id"], exc)
            status = (await self.core.orders.get_order(order["id"])).status
            if self.on_delivered is not None:
                self.on_delivered()
        return Delivered(
            activation_id,
            sms.code or "",
            order["id"] if order else None,
            str(status) if status is not None else None,
        )

    async def _orders_for(self, activation_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not activation_ids:
            return {}
        async with self.core.db.read() as conn:
            rows = (
                (
                    await conn.execute(
                        select(orders.c.id, orders.c.status, orders.c.activation_id, users.c.telegram_id)
                        .select_from(orders.join(users, users.c.id == orders.c.user_id))
                        .where(
                            orders.c.provider == self.provider_name,
                            orders.c.activation_id.in_(activation_ids),
                        )
                    )
                )
                .mappings()
                .all()
            )
        return {r["activation_id"]: dict(r) for r in rows}
