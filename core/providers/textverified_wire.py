"""TextVerified API v2 wire format: paths, state and error-code tables, error bodies, ids.

What the adapter (``core.providers.textverified``) reads off and puts on the wire, without any
I/O. Protocol facts: ``shared/reference/textverified-api-v2.md``.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from core.providers.base import ActivationState
from core.providers.errors import (
    InsufficientProviderBalance,
    OutOfStock,
    PriceTooHigh,
    ProviderError,
    TooManyActive,
)

API = "/api/pub/v2"

# errorCode of a 400 on create → error class
CREATE_ERRORS: dict[str, type[ProviderError]] = {
    "InsufficientBalance": InsufficientProviderBalance,
    "Unavailable": OutOfStock,
    "PricingFailure": PriceTooHigh,
    "TooManyUnfinishedVerifications": TooManyActive,
}

STATES: dict[str, ActivationState] = {
    "verificationPending": ActivationState.WAITING,
    # Completed: the code arrived and the verification closed (billed) — never "still open"
    "verificationCompleted": ActivationState.FINISHED,
    "verificationCanceled": ActivationState.CANCELLED,
    "verificationTimedOut": ActivationState.EXPIRED,
    "verificationReported": ActivationState.CANCELLED,
    "verificationRefunded": ActivationState.CANCELLED,
    "verificationReused": ActivationState.FINISHED,
    "verificationReactivated": ActivationState.FINISHED,
}
OPEN_STATES = {"verificationPending"}
#: ``availableQuantity`` is capped: 9000 means "9000 or more"
STOCK_CAP = 9000

# canonical service → TextVerified serviceName candidates (first one the service list has);
# a canonical code not listed here is tried as its own name.
SERVICE_ALIASES: dict[str, tuple[str, ...]] = {
    "google": ("google", "gmail", "youtube"),
    "microsoft": ("microsoft", "outlook", "hotmail"),
    "twitter": ("twitter", "x"),
    "openai": ("openai", "chatgpt"),
    "alibaba": ("alibaba", "aliexpress"),
    "apple": ("apple", "icloud"),
    "line": ("line", "linemessenger"),
    "other": (),  # "servicenotlisted" needs a free-text name; not sold through this adapter
}


def error_doc(response: httpx.Response) -> tuple[bool, str | None, str | None]:
    """(is an ``Error`` document, errorCode, errorDescription). The spec makes both fields
    required but nullable: ``{"errorCode": null, …}`` is still a well-formed refusal."""
    try:
        doc = response.json()
    except (ValueError, UnicodeDecodeError):
        return False, None, None
    if not isinstance(doc, dict) or not ({"errorCode", "errorDescription"} & doc.keys()):
        return False, None, None
    code, text = doc.get("errorCode"), doc.get("errorDescription")
    return True, code if isinstance(code, str) else None, text if isinstance(text, str) else None


def restart_key(key: str) -> str:
    """The key of the purchase that replaces an expired one (still 1–256 characters)."""
    return key[:250] + "~new"


def seg(activation_id: str) -> str:
    """An id as one URL path segment (no traversal through a crafted id)."""
    return quote(str(activation_id), safe="")
