"""The handler API's wire format: error keywords, setStatus answers, phone and SMS fields.

What the adapter (``core.providers.handlerapi``) reads off the wire, without any I/O; the
differences between the services that speak it live in ``handlerapi_presets``.
"""

from __future__ import annotations

import json

from core.providers.base import SmsMessage
from core.providers.errors import (
    ActivationNotFound,
    AlreadyClosed,
    BadKey,
    BadService,
    Banned,
    BusinessError,
    EarlyCancelDenied,
    InsufficientProviderBalance,
    NotSupported,
    OutOfStock,
    PriceTooHigh,
    ProviderError,
    ProviderUnavailable,
    TooManyActive,
)

# Error keywords → error class. Replies are ``KEYWORD`` or ``KEYWORD:detail``.
ERRORS: dict[str, type[ProviderError]] = {
    "NO_NUMBERS": OutOfStock,
    "WRONG_MAX_PRICE": PriceTooHigh,
    "NO_BALANCE": InsufficientProviderBalance,
    "BAD_KEY": BadKey,
    "BANNED": Banned,
    "BAD_ACTION": NotSupported,
    "BAD_SERVICE": BadService,
    "BAD_STATUS": BusinessError,
    "NO_ACTIVATION": ActivationNotFound,
    "WRONG_ACTIVATION_ID": ActivationNotFound,
    "TOO_MANY_ACTIVE_RENTALS": TooManyActive,
    "CHANNELS_LIMIT": TooManyActive,
    "ERROR_SQL": ProviderUnavailable,
    "EARLY_CANCEL_DENIED": EarlyCancelDenied,
    "ALREADY_CANCEL": AlreadyClosed,
    "ALREADY_FINISH": AlreadyClosed,
}

SET_STATUS_OK = {1: "ACCESS_READY", 3: "ACCESS_RETRY_GET", 6: "ACCESS_ACTIVATION", 8: "ACCESS_CANCEL"}
# actions that take the dialect's currency parameter (SMSHub)
CURRENCY_ACTIONS = frozenset({"getBalance", "getNumber", "getNumberV2", "getPrices"})


def is_phone(text: str) -> bool:
    digits = text.strip().removeprefix("+")
    return 5 <= len(digits) <= 20 and digits.isdigit()


def truthy(value: object) -> bool:
    return str(value).strip().lower() not in ("0", "false", "", "none")


def message_id(activation_id: str, code: str) -> str:
    """Stable across getStatus and getActiveActivations, so each code is recorded once."""
    return f"{activation_id}:{code}"


def as_list(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v not in (None, "")]
    if isinstance(value, str) and value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return [value]
        return as_list(parsed) if isinstance(parsed, list) else [value]
    return [str(value)]


def sms_messages(activation_id: str, codes: object, texts: object) -> tuple[SmsMessage, ...]:
    code_list, text_list = as_list(codes), as_list(texts)
    out = []
    for i, code in enumerate(code_list):
        text = text_list[i] if i < len(text_list) else None
        out.append(SmsMessage(message_id(activation_id, code.strip()), code.strip(), text))
    return tuple(out)
