"""5sim API v1 wire format: error-text and state tables, path segments, ids.

What the adapter (``core.providers.fivesim``) reads off and puts on the wire, without any I/O.
Protocol facts: ``shared/reference/5sim-api-v1.md``.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from core.providers.base import ActivationState
from core.providers.errors import (
    ActivationNotFound,
    AlreadyClosed,
    BadService,
    Banned,
    BusinessError,
    EarlyCancelDenied,
    InsufficientProviderBalance,
    NotSupported,
    OutOfStock,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)

# Error body text (lower case, single spaces) → error class.
ERRORS: dict[str, type[ProviderError]] = {
    "no free phones": OutOfStock,
    "not enough user balance": InsufficientProviderBalance,
    # Rating too low to buy (0 blocks buying for 24 h): staff must act, like a ban.
    "not enough rating": Banned,
    "select country": BadService,
    "select operator": BadService,
    "bad country": BadService,
    "bad operator": BadService,
    "no product": BadService,
    "country is incorrect": BadService,
    "product is incorrect": BadService,
    "server offline": ProviderUnavailable,
    "internal error": ProviderUnavailable,
    "reuse not possible": NotSupported,
    "reuse false": NotSupported,
    "reuse expired": NotSupported,
    "order not found": ActivationNotFound,
    "record not found": ActivationNotFound,
    "order expired": AlreadyClosed,
    # A code arrived: the order can only be finished (and is billed); not a definite close.
    "order has sms": BusinessError,
    "order no sms": BusinessError,
    "hosting order": BusinessError,
    "you need to wait time": EarlyCancelDenied,
    "api limit is 100 requests per second": RateLimited,
    "ip address limit is 100 requests per second": RateLimited,
}

STATES: dict[str, ActivationState] = {
    "PENDING": ActivationState.WAITING,
    "RECEIVED": ActivationState.WAITING,  # CODE once the sms list is non-empty
    "CANCELED": ActivationState.CANCELLED,
    "BANNED": ActivationState.CANCELLED,
    "TIMEOUT": ActivationState.EXPIRED,
    "FINISHED": ActivationState.FINISHED,
}
OPEN_STATES = frozenset({"PENDING", "RECEIVED"})
LONGEST_LIFETIME = timedelta(minutes=30)
CLOSE_OPS = {"finish": "FINISHED", "cancel": "CANCELED", "ban": "BANNED"}


def seg(value: str) -> str:
    return quote(str(value).strip(), safe="")


def order_id(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError
    text = str(value).strip()
    if not text:
        raise ValueError
    return text


def is_phone(text: str) -> bool:
    digits = text.strip().removeprefix("+")
    return 5 <= len(digits) <= 20 and digits.isdigit()


def message_id(activation_id: str, entry: dict[str, Any], code: str | None, text: str | None) -> str:
    """Stable across polls (5sim gives check's SMS no id): when it arrived and what it says."""
    stamp = str(entry.get("date") or entry.get("created_at") or "")
    digest = hashlib.sha256(f"{code or ''}\0{text or ''}".encode()).hexdigest()[:12]
    return f"{activation_id}:{stamp}:{digest}"
