"""The ``Provider`` port: what every upstream of phone numbers must offer the shop.

Amounts crossing this port are integers in the *shop currency's* minor units; an adapter
converts from its provider's currency on the way in and out. Times are aware UTC datetimes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Offer:
    """One (service, country) the provider sells now."""

    service: str  # canonical service code, e.g. 'whatsapp'
    country: str  # ISO 3166-1 alpha-2, e.g. 'GB'
    cost: int  # shop minor units
    stock: int


@dataclass(frozen=True, slots=True)
class RentRequest:
    service: str
    country: str
    max_cost: int  # never pay more than this (shop minor units)
    idempotency_key: str  # our order id; sent where the protocol supports it


@dataclass(frozen=True, slots=True)
class Rental:
    activation_id: str
    phone: str
    cost: int  # shop minor units
    expires_at: datetime
    service: str | None = None
    country: str | None = None
    created_at: datetime | None = None
    can_request_another: bool = False


class ActivationState(enum.StrEnum):
    WAITING = "waiting"  # no code yet
    CODE = "code"  # at least one code received; still open
    CANCELLED = "cancelled"  # closed upstream without billing
    FINISHED = "finished"  # closed upstream after a code
    EXPIRED = "expired"  # timed out upstream


@dataclass(frozen=True, slots=True)
class SmsMessage:
    message_id: str  # stable per message; used to record each message once
    code: str | None
    text: str | None
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ActivationStatus:
    activation_id: str
    state: ActivationState
    messages: tuple[SmsMessage, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Balance:
    amount: int  # in the provider's own minor units
    currency: str


@dataclass(frozen=True, slots=True)
class Capabilities:
    idempotent_rent: bool = False  # rent retried with the same key returns the same rental
    batch_status: bool = False  # batch_status() costs one upstream call
    another_code: bool = False


@runtime_checkable
class Provider(Protocol):
    name: str
    capabilities: Capabilities

    async def catalogue(self) -> list[Offer]: ...

    async def rent(self, request: RentRequest) -> Rental: ...

    async def status(self, activation_id: str) -> ActivationStatus: ...

    async def batch_status(self, activation_ids: list[str]) -> dict[str, ActivationStatus]:
        """Status of many activations; ids unknown upstream are simply absent."""
        ...

    async def cancel(self, activation_id: str) -> None: ...

    async def finish(self, activation_id: str) -> None: ...

    async def request_another_code(self, activation_id: str) -> None: ...

    async def active_activations(self) -> list[Rental]: ...

    async def balance(self) -> Balance: ...

    async def aclose(self) -> None: ...
