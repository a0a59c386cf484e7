"""Presets for providers that still speak ``handler_api.php``: where they live and how they differ.

Pure data, read by the instance loader (``core/providers/instances.py``: URL and currency
defaults) and by the ``handlerapi`` adapter (everything else). Every entry comes from
``shared/reference/sms-activate-protocol.md`` ("Compatible providers today"); where the
reference says "not found", the preset leaves the value to the operator (a currency the
reference does not confirm must be configured, never assumed).

SMS-Activate itself closed in December 2025: there is no preset for it, and no default URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from core.providers.errors import (
    AccountError,
    BadKey,
    BadService,
    InsufficientProviderBalance,
    NotSupported,
    OutOfStock,
    PriceTooHigh,
    ProviderError,
    ProviderUnavailable,
    TooManyActive,
)

#: ISO 4217 numeric codes, for providers that take the currency as a number (SMSHub).
NUMERIC_CURRENCY: Mapping[str, int] = MappingProxyType({"RUB": 643, "USD": 840, "EUR": 978})


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one provider's ``handler_api.php`` differs from SMS-Activate's."""

    name: str = "handlerapi"
    url: str | None = None
    #: balance/price currency when the provider documents it; ``None``: operator must say
    currency: str | None = None
    #: query parameter(s) carrying the price cap on getNumber (every one listed is sent)
    max_price_params: tuple[str, ...] = ("maxPrice",)
    #: a refused cancel is answered ``ACCESS_READY`` instead of an error keyword (DaisySMS)
    cancel_refused_access_ready: bool = False
    #: send ``currency=<ISO 4217 numeric>`` on getBalance / getNumber / getPrices (SMSHub)
    currency_param: bool = False
    #: error keywords beyond SMS-Activate's, and plain-sentence errors (matched lower-cased,
    #: without a trailing full stop)
    extra_errors: Mapping[str, type[ProviderError]] = field(default_factory=lambda: MappingProxyType({}))
    #: how long after purchase a cancel is refused (``EARLY_CANCEL_DENIED``)
    early_cancel_seconds: float = 120.0


PRESETS: Mapping[str, Dialect] = MappingProxyType(
    {
        "grizzlysms": Dialect(
            name="grizzlysms",
            url="https://api.grizzlysms.com/stubs/handler_api.php",
            extra_errors=MappingProxyType(
                {
                    # the caller's IP region is blocked: staff must move the shop or its egress
                    "SERVICE_UNAVAILABLE_REGION": AccountError,
                    "the service is prohibited for sale by administration": BadService,
                    "the number has not been issued": OutOfStock,
                }
            ),
        ),
        "smsbower": Dialect(
            name="smsbower",
            url="https://smsbower.online/stubs/handler_api.php",
        ),
        "herosms": Dialect(
            name="herosms",
            url="https://hero-sms.com/stubs/handler_api.php",
            currency="USD",
            extra_errors=MappingProxyType({"NO_KEY": BadKey, "WRONG_COUNTRY": BadService}),
            early_cancel_seconds=120.0,
        ),
        "daisysms": Dialect(
            name="daisysms",
            url="https://daisysms.com/stubs/handler_api.php",
            currency="USD",
            max_price_params=("max_price",),
            cancel_refused_access_ready=True,
            extra_errors=MappingProxyType(
                {
                    "MAX_PRICE_EXCEEDED": PriceTooHigh,
                    "NO_MONEY": InsufficientProviderBalance,
                    "TOO_MANY_ACTIVE_RENTALS": TooManyActive,
                }
            ),
        ),
        "smshub": Dialect(
            name="smshub",
            url="https://smshub.org/stubs/handler_api.php",
            # the reference cannot say which spelling SMSHub honours: send both
            max_price_params=("maxPrice", "max_price"),
            currency_param=True,
            extra_errors=MappingProxyType(
                {
                    "API_KEY_NOT_VALID": BadKey,
                    "NO_ACTION": NotSupported,
                    "BAD_CURRENCY": AccountError,
                    "WRONG_SERVICE": BadService,
                    "CURRENCY_CHANGE_UNAVAILABLE": AccountError,
                    "SERVER_ERROR": ProviderUnavailable,
                }
            ),
        ),
    }
)

#: a plain handlerapi instance (no preset): SMS-Activate's own dialect
PLAIN = Dialect()


def dialect(preset: str | None) -> Dialect:
    return PRESETS[preset] if preset else PLAIN
