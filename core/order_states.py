"""Order lifecycle as a pure function: which transitions are legal and what each does to money.

    reserving ──rented──▶ waiting ──code──▶ completed ──refund──▶ refunded
        │                   │
        └──fail─▶ failed ◀──┼──cancel──▶ cancelled
                            └──expire──▶ expired

The database applies a transition as compare-and-set on ``status``; this module only decides.
Keeping the table here, free of I/O, lets the unit tests enumerate every pair.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class OrderStatus(enum.StrEnum):
    RESERVING = "reserving"
    WAITING = "waiting"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    FAILED = "failed"
    REFUNDED = "refunded"


class OrderEvent(enum.StrEnum):
    RENTED = "rented"
    CODE = "code"
    CANCEL = "cancel"
    EXPIRE = "expire"
    FAIL = "fail"
    REFUND = "refund"


class LedgerEffect(enum.StrEnum):
    NONE = "none"
    CAPTURE = "capture"  # post the hold: the user pays
    RELEASE = "release"  # void the hold: the user gets the money back
    REFUND = "refund"  # posted transfer revenue → wallet after a capture


S, E, L = OrderStatus, OrderEvent, LedgerEffect

TRANSITIONS: dict[tuple[OrderStatus, OrderEvent], tuple[OrderStatus, LedgerEffect]] = {
    (S.RESERVING, E.RENTED): (S.WAITING, L.NONE),
    (S.RESERVING, E.FAIL): (S.FAILED, L.RELEASE),
    # Staff may cancel an order stuck in reserving; a rental that lands later is cancelled.
    (S.RESERVING, E.CANCEL): (S.CANCELLED, L.RELEASE),
    (S.WAITING, E.CODE): (S.COMPLETED, L.CAPTURE),
    (S.WAITING, E.CANCEL): (S.CANCELLED, L.RELEASE),
    (S.WAITING, E.EXPIRE): (S.EXPIRED, L.RELEASE),
    (S.WAITING, E.FAIL): (S.FAILED, L.RELEASE),
    (S.COMPLETED, E.REFUND): (S.REFUNDED, L.REFUND),
}

OPEN = frozenset({S.RESERVING, S.WAITING})
TERMINAL = frozenset({S.CANCELLED, S.EXPIRED, S.FAILED, S.REFUNDED})
# What the hold must look like for each status (ledger invariant 5).
HOLD_STATE = {
    S.RESERVING: "pending",
    S.WAITING: "pending",
    S.COMPLETED: "post_pending",
    S.REFUNDED: "post_pending",
    S.CANCELLED: "void_pending",
    S.EXPIRED: "void_pending",
    S.FAILED: "void_pending",
}


class IllegalTransition(Exception):
    def __init__(self, status: str, event: str) -> None:
        super().__init__(f"cannot {event} an order that is {status}")
        self.status = status
        self.event = event


@dataclass(frozen=True, slots=True)
class Transition:
    source: OrderStatus
    target: OrderStatus
    effect: LedgerEffect
    event: OrderEvent


def transition(status: str, event: str) -> Transition:
    try:
        source, ev = OrderStatus(status), OrderEvent(event)
        target, effect = TRANSITIONS[(source, ev)]
    except (ValueError, KeyError):
        raise IllegalTransition(status, event) from None
    return Transition(source, target, effect, ev)


def can(status: str, event: str) -> bool:
    try:
        transition(status, event)
    except IllegalTransition:
        return False
    return True
