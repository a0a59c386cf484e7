"""The provider error hierarchy: what went wrong decides who reacts.

* ``TransientError`` — the provider may work if asked again (timeouts, resets, 5xx, 429,
  malformed replies). Counts toward the circuit breaker; routing fails over.
* ``OutcomeUnknown`` — a transient error after a non-idempotent request may have been
  applied. The order stays ``reserving`` and recovery resolves it; never fail over blindly.
* ``BusinessError`` — a definite "no" about this request (no stock, price too high, early
  cancel). Does not count toward the breaker; routing tries the next provider.
* ``AccountError`` — our account at the provider is broken (bad key, banned, no balance).
  Staff must act; counts toward the breaker so we stop hammering it.
"""

from __future__ import annotations

from datetime import datetime

from core.errors import ShopError


class ProviderError(Exception):
    def __init__(self, message: str = "", *, provider: str | None = None) -> None:
        super().__init__(message or self.__class__.__name__)
        self.provider = provider


class TransientError(ProviderError):
    pass


class ProviderTimeout(TransientError):
    pass


class ProviderUnavailable(TransientError):
    """Connection refused/reset, 5xx, or the circuit breaker is open."""


class RateLimited(TransientError):
    def __init__(self, message: str = "", *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class MalformedResponse(TransientError):
    pass


class OutcomeUnknown(TransientError):
    pass


class BreakerOpen(ProviderUnavailable):
    """Raised without calling the provider while its breaker is open."""


class BusinessError(ProviderError):
    pass


class OutOfStock(BusinessError, ShopError):
    """No numbers for this service and country: a provider's answer, or the catalogue's when
    no offer is left (or none at the set price). The one class for both, so the bot maps it
    once and routing, the breaker and the shop's error handling all agree on it."""


class PriceTooHigh(BusinessError):
    def __init__(self, message: str = "", *, min_price: int | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.min_price = min_price


class BadService(BusinessError):
    pass


class ActivationNotFound(BusinessError):
    pass


class AlreadyClosed(BusinessError):
    """Cancel or finish of an activation the provider already closed."""


class EarlyCancelDenied(BusinessError):
    def __init__(self, message: str = "", *, retry_at: datetime | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_at = retry_at


class TooManyActive(BusinessError):
    pass


class NotSupported(BusinessError):
    """The protocol has no such operation (e.g. another code)."""


class AccountError(ProviderError):
    pass


class BadKey(AccountError):
    pass


class Banned(AccountError):
    pass


class InsufficientProviderBalance(AccountError):
    pass
