"""Form plumbing shared by the pages: nonces, field parsing, and errors shown with the form.

Each rendered form carries a fresh random nonce. Submitting it passes
``admin:{staff_id}:{nonce}`` to the core service as the idempotency key, so a double click, a
browser retry or a resubmitted page acts once. The staff id in the key keeps one person's
nonce from ever colliding with another's.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time

from litestar.stores.base import Store

from core.errors import (
    AlreadyInProgress,
    HoldAlreadyResolved,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidInput,
    NotFound,
    OrderStateConflict,
    ShopError,
    TransferConflict,
    UserBlocked,
)
from core.money import MoneyError, format_amount, parse_positive_amount
from core.staff import NotAllowed, StaffMember, check_reason

_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MIN_DAY, MAX_DAY = date(2000, 1, 1), date(9998, 12, 31)
MAX_REASON = 500


class FormError(Exception):
    """Bad input or a refused action: shown next to the form, with an HTTP 4xx status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def idempotency_key(member: StaffMember, form: Mapping[str, str]) -> str:
    nonce = (form.get("nonce") or "").strip()
    if not _NONCE_RE.match(nonce):
        raise FormError("this form has expired or was not sent from the dashboard; reload the page")
    return f"admin:{member.id}:{nonce}"


class AlreadySubmitted(Exception):
    """This form's nonce was used before: the action already happened (or is happening)."""


ALREADY_SUBMITTED = "This form was already submitted; nothing more was done."
NONCE_TTL_SECONDS = 7 * 24 * 3600


@asynccontextmanager
async def acting_once(store: Store, key: str) -> AsyncIterator[None]:
    """Run the body once per form nonce, for actions whose core service takes no
    idempotency key (block, prices, staff, reconciliation). Claimed in the shared store
    (Redis when replicas run), released again if the action fails, so fixing the input
    and resubmitting is never refused."""
    name = f"form-nonce:{key}"
    if await store.exists(name):
        raise AlreadySubmitted(key)
    await store.set(name, b"1", expires_in=NONCE_TTL_SECONDS)
    try:
        yield
    except BaseException:
        await store.delete(name)
        raise


def amount_field(form: Mapping[str, str], currency: str, name: str = "amount") -> int:
    text = (form.get(name) or "").strip()
    if not text:
        raise FormError("enter an amount, like 5.00")
    if text.startswith("-"):
        raise FormError("the amount must be positive; use debit to take money away")
    try:
        return parse_positive_amount(text, currency)
    except MoneyError as exc:
        raise FormError(str(exc)) from None


def reason_field(form: Mapping[str, str]) -> str:
    try:
        return check_reason(form.get("reason") or "", max_length=MAX_REASON)
    except InvalidInput as exc:
        raise FormError(str(exc)) from None


def parse_day(text: str | None, *, field: str) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    # ASCII digits only, and a year the day after which still exists (9999-12-31 + 1 day
    # overflows); date.fromisoformat alone accepts other digits and every year.
    match = _DAY_RE.fullmatch(text)
    try:
        day = date.fromisoformat(text) if match else None
    except ValueError:
        day = None
    if day is None:
        raise FormError(f"{field}: use a date like 2026-01-31")
    if not MIN_DAY <= day <= MAX_DAY:
        raise FormError(f"{field}: use a date between {MIN_DAY} and {MAX_DAY}")
    return day


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def error_status(exc: ShopError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, NotAllowed):
        return 403
    if isinstance(
        exc,
        (
            OrderStateConflict,
            HoldAlreadyResolved,
            IdempotencyConflict,
            AlreadyInProgress,
            TransferConflict,
            UserBlocked,
            InsufficientFunds,
        ),
    ):
        return 409
    if isinstance(exc, InvalidInput):
        return 400
    return 400


def error_message(exc: ShopError, currency: str) -> str:
    if isinstance(exc, InsufficientFunds):
        available = "" if exc.available is None else f"; available {format_amount(exc.available, currency)}"
        return f"not enough money in the wallet{available}"
    if isinstance(exc, AlreadyInProgress):
        return "this form was already submitted and is still being processed"
    if isinstance(exc, IdempotencyConflict):
        return "this form was already used for a different action; reload the page"
    return str(exc) or type(exc).__name__
