"""Core and provider errors as the one short sentence a user reads.

Every error a handler can meet ends here, so a user never sees a traceback and always learns
what happened to their money. Unknown exceptions get the generic sentence; whoever catches
them also logs them.
"""

from __future__ import annotations

from aiogram.exceptions import TelegramAPIError

from bot import texts
from core.errors import (
    AlreadyInProgress,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidInput,
    NoProviderAvailable,
    NotFound,
    OrderStateConflict,
    QuoteExpired,
    ShopError,
    UserBlocked,
)
from core.money import MoneyError
from core.providers.errors import AlreadyClosed, NotSupported, OutOfStock, ProviderError


def sentence(exc: BaseException, currency: str = "USD") -> str:
    if isinstance(exc, AlreadyInProgress):
        return texts.WORKING
    if isinstance(exc, InsufficientFunds):
        return texts.insufficient(exc.missing, currency)
    if isinstance(exc, QuoteExpired):
        return texts.QUOTE_EXPIRED
    if isinstance(exc, NotFound):
        return texts.STALE_BUTTON
    if isinstance(exc, UserBlocked):
        return texts.BLOCKED
    if isinstance(exc, NoProviderAvailable):
        return texts.not_charged(exc.reason)
    if isinstance(exc, OutOfStock):
        return texts.OUT_OF_STOCK
    if isinstance(exc, OrderStateConflict):
        if exc.status == "reserving":
            return texts.CANCEL_TOO_EARLY
        return texts.order_closed(exc.status)
    if isinstance(exc, IdempotencyConflict):
        return texts.CONFLICT
    if isinstance(exc, (InvalidInput, MoneyError)):
        return texts.BAD_INPUT
    if isinstance(exc, (AlreadyClosed, NotSupported)):
        return texts.NO_MORE_CODES
    if isinstance(exc, ProviderError):
        return texts.PROVIDER_DOWN
    return texts.INTERNAL


def is_expected(exc: BaseException) -> bool:
    """Errors that are part of normal use (logged quietly, not as failures)."""
    return isinstance(exc, (ShopError, ProviderError, MoneyError))


def is_not_modified(exc: BaseException) -> bool:
    """Telegram's answer to an edit that changes nothing: harmless, ignore it."""
    return isinstance(exc, TelegramAPIError) and "message is not modified" in str(exc)
