"""Telegram Stars invoices whose payload we can trust when the payment comes back.

The bot keeps no invoice table: the payload itself says who may pay, how many Stars, and how
much the shop credits for them, and it is signed (HMAC-SHA256 with a key derived from a
server secret), so ``pre_checkout_query`` and ``successful_payment`` can check that the
user, the currency and the amount are exactly what we issued. A forged or altered payload
fails the signature; an old one fails the age check before any Star is taken. The credited
amount is fixed at issue time, so a rate change never alters what a shown invoice buys.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import datetime

from core.money import exponent

VERSION = "s1"
MAX_AGE_S = 24 * 3600
MAX_STARS = 10_000  # Telegram's ceiling for one Stars invoice
PACKAGES = (50, 250, 500, 1000)  # Stars; the bot shows what each adds in shop currency


@dataclass(frozen=True, slots=True)
class Invoice:
    telegram_id: int
    stars: int
    amount: int  # shop minor units credited when paid
    issued: int  # unix seconds
    payload: str


class InvoiceSigner:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"numbershop-stars-invoice:" + secret.encode()).digest()

    def _sig(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, telegram_id: int, stars: int, amount: int, now: datetime) -> Invoice:
        issued = int(now.timestamp())
        body = f"{VERSION}.{telegram_id}.{stars}.{amount}.{issued}.{secrets.token_hex(4)}"
        return Invoice(telegram_id, stars, amount, issued, f"{body}.{self._sig(body)}")

    def verify(
        self,
        payload: str,
        *,
        telegram_id: int,
        currency: str,
        total_amount: int,
        now: datetime | None = None,
    ) -> Invoice | None:
        """The invoice if everything matches what we issued, else None.

        ``now`` is given at pre-checkout (refuse stale invoices before payment) and left out
        for a payment that already happened (it must be credited whatever its age).
        """
        if not isinstance(payload, str) or len(payload) > 128:
            return None
        body, _, sig = payload.rpartition(".")
        if not hmac.compare_digest(sig.encode(), self._sig(body).encode()):
            return None
        parts = body.split(".")
        if len(parts) != 6 or parts[0] != VERSION:
            return None
        try:
            uid, stars, amount, issued = (int(p) for p in parts[1:5])
        except ValueError:
            return None
        if uid != telegram_id or currency != "XTR" or total_amount != stars:
            return None
        if now is not None and not 0 <= now.timestamp() - issued <= MAX_AGE_S:
            return None
        return Invoice(uid, stars, amount, issued, payload)


def credit_for_stars(stars: int, stars_per_unit: float, currency: str) -> int:
    """Shop minor units a number of Stars buys (rounded down: never credit more than paid)."""
    scale: int = 10 ** exponent(currency)  # int ** int is typed Any; the exponent is never negative
    return math.floor(stars * scale / stars_per_unit + 1e-9)


def stars_for_amount(amount: int, stars_per_unit: float, currency: str) -> int:
    """Stars needed to add at least ``amount`` minor units (rounded up)."""
    scale: int = 10 ** exponent(currency)  # int ** int is typed Any; the exponent is never negative
    return math.ceil(amount * stars_per_unit / scale - 1e-9)


def amount_bounds(stars_per_unit: float, currency: str) -> tuple[int, int]:
    """The smallest and largest custom top-up, in minor units."""
    low = max(1, credit_for_stars(1, stars_per_unit, currency))
    return low, credit_for_stars(MAX_STARS, stars_per_unit, currency)
