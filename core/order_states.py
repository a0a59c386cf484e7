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

from core.ledger import TransferKind


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
    CAPTURE = "capture"  # capture the hold: the user pays
    VOID = "void"  # void the hold: the user gets the money back
    REFUND = "refund"  # posted transfer revenue → wallet after a capture


class UpstreamState(enum.StrEnum):
    """Where the order's activation stands at the provider, apart from what the user sees:
    a refund never waits for the provider, so closing it upstream is tracked (and retried)
    on its own."""

    NONE = "none"  # nothing rented, nothing to close
    ACTIVE = "active"  # rented and open upstream
    CANCEL_PENDING = "cancel_pending"  # to be cancelled upstream (retried until done)
    FINISH_PENDING = "finish_pending"  # to be finished upstream after its code
    CANCELLED = "cancelled"
    FINISHED = "finished"


UPSTREAM_PENDING = frozenset({UpstreamState.CANCEL_PENDING, UpstreamState.FINISH_PENDING})
UPSTREAM_CLOSED = frozenset({UpstreamState.CANCELLED, UpstreamState.FINISHED})


S, E, L = OrderStatus, OrderEvent, LedgerEffect

TRANSITIONS: dict[tuple[OrderStatus, OrderEvent], tuple[OrderStatus, LedgerEffect]] = {
    (S.RESERVING, E.RENTED): (S.WAITING, L.NONE),
    (S.RESERVING, E.FAIL): (S.FAILED, L.VOID),
    # Staff may cancel an order stuck in reserving; a rental that lands later is cancelled.
    (S.RESERVING, E.CANCEL): (S.CANCELLED, L.VOID),
    (S.WAITING, E.CODE): (S.COMPLETED, L.CAPTURE),
    (S.WAITING, E.CANCEL): (S.CANCELLED, L.VOID),
    (S.WAITING, E.EXPIRE): (S.EXPIRED, L.VOID),
    (S.WAITING, E.FAIL): (S.FAILED, L.VOID),
    (S.COMPLETED, E.REFUND): (S.REFUNDED, L.REFUND),
}

OPEN = frozenset({S.RESERVING, S.WAITING})
TERMINAL = frozenset({S.CANCELLED, S.EXPIRED, S.FAILED, S.REFUNDED})
# What the hold must look like for each status (ledger invariant 5).
# The hold's own kind while it is unresolved, else the kind of its resolution.
K = TransferKind
HOLD_STATE = {
    S.RESERVING: K.HOLD,
    S.WAITING: K.HOLD,
    S.COMPLETED: K.CAPTURE,
    S.REFUNDED: K.CAPTURE,
    S.CANCELLED: K.VOID,
    S.EXPIRED: K.VOID,
    S.FAILED: K.VOID,
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
