"""The core's error hierarchy. Adapters map these to user text (bot), HTTP statuses
(dashboard) and exit codes (CLI); nothing above core needs to know a database exists."""

from __future__ import annotations


class NestedTransaction(RuntimeError):
    """``Database.begin()`` inside a ``begin()`` block of the same task: a bug, not a user error.

    On SQLite the outer block already holds this process's write lock, so the inner one would
    wait for it forever; it is refused at once, on both backends, so the bug shows in tests on
    either. Pass the open connection down instead."""


class ShopError(Exception):
    """Base of every expected, user-explainable failure raised by core services."""


class InvalidInput(ShopError):
    pass


class NotFound(ShopError):
    pass


class UserNotFound(NotFound):
    pass


class OrderNotFound(NotFound):
    """Also raised for another user's order: existence is not disclosed."""


class QuoteNotFound(NotFound):
    pass


class QuoteExpired(ShopError):
    pass


class UserBlocked(ShopError):
    pass


class InsufficientFunds(ShopError):
    def __init__(self, missing: int, available: int | None = None) -> None:
        super().__init__(f"insufficient funds: {missing} minor units missing")
        self.missing = missing
        self.available = available


class TransferConflict(ShopError):
    """A transfer id reused with different content: a bug or a forged retry, never a no-op."""


class HoldAlreadyResolved(ShopError):
    """The pending transfer was already posted or voided."""


class IdempotencyConflict(ShopError):
    """Same idempotency key, different request."""


class AlreadyInProgress(ShopError):
    """Same idempotency key while the first attempt is still running."""

    def __init__(self, result: object = None) -> None:
        super().__init__("already in progress")
        self.result = result


class OrderStateConflict(ShopError):
    """The order is not in a state that allows this; ``status`` is what it is now."""

    def __init__(self, order_id: str, status: str, wanted: str = "") -> None:
        super().__init__(f"order {order_id} is {status}" + (f"; cannot {wanted}" if wanted else ""))
        self.order_id = order_id
        self.status = status


class NoProviderAvailable(ShopError):
    """Every provider refused or is down; the hold was voided, the user was not charged."""

    def __init__(self, reason: str = "unavailable", order_id: str | None = None) -> None:
        super().__init__(f"no provider could supply a number ({reason})")
        self.reason = reason  # 'out_of_stock' | 'unavailable' | 'price'
        self.order_id = order_id


# ``OutOfStock`` is ``core.providers.errors.OutOfStock``: one class for "no numbers", whether a
# provider said it or the catalogue found no offer; it is both a ``ShopError`` and a provider
# ``BusinessError`` (a healthy answer the breaker does not count).
