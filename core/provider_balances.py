"""Upstream money: each provider's balance, recorded in its own currency, and a staff alert
when it falls below the instance's ``<NAME>_BALANCE_ALERT_BELOW``.

The alert fires once per *crossing*: when the balance goes from at-or-above the threshold
(or unknown) to below it. A crossing is named by the last snapshot that was at or above the
threshold (0 when there is none), and that name is the outbox dedupe key, so every poll while
the balance stays low — from this scheduler or a second one running the same ticker — maps
to the same key and the outbox's unique key lets only one alert in. A rise back to the
threshold records a new at-or-above snapshot, which re-arms the alert under a new key.

The balance is read from the provider before any transaction opens; the snapshot and the
alert are written in one transaction, so a crash never records a low balance without its
alert.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core import outbox
from core.clock import Clock
from core.config import Settings
from core.db.engine import Database
from core.db.tables import provider_balances
from core.money import MoneyError, format_amount
from core.providers.base import Balance, Provider
from core.providers.errors import ProviderError

log = logging.getLogger(__name__)

ALERT_KIND = "staff_alert"


@dataclass(frozen=True, slots=True)
class BalanceCheck:
    """One provider's outcome of a check: the balance read (None when the read failed),
    whether it is below the threshold, and whether this run queued the alert."""

    provider: str
    balance: Balance | None
    threshold: int | None
    low: bool = False
    alerted: bool = False
    error: str | None = None


def thresholds(settings: Settings) -> dict[str, int]:
    """Each configured instance's alert threshold, in its currency's minor units."""
    return {
        i.name: i.balance_alert_below
        for i in settings.provider_instances
        if i.balance_alert_below is not None
    }


def is_low(amount: int, currency: str, threshold: int | None, threshold_currency: str | None) -> bool:
    """Below the threshold, compared only in the threshold's own currency: a balance
    reported in another currency cannot be compared without a rate, so it is never "low"."""
    if threshold is None:
        return False
    if threshold_currency is not None and currency.upper() != threshold_currency.upper():
        return False
    return amount < threshold


def dedupe_key(provider: str, last_ok_id: int) -> str:
    return f"balance_low:{provider}:{last_ok_id}"


def alert_text(provider: str, balance: Balance, threshold: int) -> str:
    return (
        f"Provider {provider}: balance {_fmt(balance.amount, balance.currency)} is below "
        f"the alert threshold {_fmt(threshold, balance.currency)}; top up the provider account."
    )


def _fmt(amount: int, currency: str) -> str:
    try:
        return format_amount(amount, currency)
    except MoneyError:
        return f"{amount} {currency} (minor units)"


async def record(
    conn: AsyncConnection,
    provider: str,
    balance: Balance,
    *,
    threshold: int | None,
    staff_chat_id: int | None,
    now: datetime,
) -> tuple[bool, bool]:
    """Store one snapshot and, when it is below the threshold, queue the crossing's alert.
    Returns (low, alert queued by this call)."""
    result = await conn.execute(
        provider_balances.insert().values(
            provider=provider, amount=balance.amount, currency=balance.currency, taken_at=now
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    snapshot_id = int(key[0])
    if threshold is None or balance.amount >= threshold:
        return False, False
    last_ok = (
        await conn.execute(
            select(func.max(provider_balances.c.id)).where(
                provider_balances.c.provider == provider,
                provider_balances.c.currency == balance.currency,
                provider_balances.c.amount >= threshold,
                provider_balances.c.id < snapshot_id,
            )
        )
    ).scalar_one_or_none()
    text = alert_text(provider, balance, threshold)
    if staff_chat_id is None:
        log.warning("staff alert (STAFF_CHAT_ID is not set): %s", text)
        return True, False
    queued = await outbox.enqueue(
        conn,
        kind=ALERT_KIND,
        chat_id=staff_chat_id,
        payload={"text": text, "provider": provider},
        dedupe_key=dedupe_key(provider, int(last_ok or 0)),
        now=now,
    )
    return True, queued


async def check(
    db: Database,
    clock: Clock,
    providers: Mapping[str, Provider],
    limits: Mapping[str, int],
    *,
    staff_chat_id: int | None,
    currencies: Mapping[str, str] | None = None,
) -> list[BalanceCheck]:
    """Read every provider's balance, record it, and alert on a downward crossing.

    ``limits`` maps instance name to threshold in minor units of ``currencies[name]`` (the
    instance's configured currency); a provider without one is recorded but never alerts.
    A failed read is reported, not raised, so one provider down does not hide the others."""
    out: list[BalanceCheck] = []
    for name, provider in providers.items():
        threshold = limits.get(name)
        try:
            balance = await provider.balance()
        except ProviderError as exc:
            log.warning("balance of %s not read: %s", name, exc)
            out.append(BalanceCheck(name, None, threshold, error=str(exc)))
            continue
        want = (currencies or {}).get(name)
        if threshold is not None and want is not None and balance.currency.upper() != want.upper():
            log.warning(
                "balance of %s is in %s, its threshold in %s: not compared", name, balance.currency, want
            )
            threshold = None
        async with db.begin() as conn:
            low, alerted = await record(
                conn, name, balance, threshold=threshold, staff_chat_id=staff_chat_id, now=clock.now()
            )
        out.append(BalanceCheck(name, balance, threshold, low=low, alerted=alerted))
    return out


async def check_from_settings(
    db: Database, clock: Clock, providers: Mapping[str, Provider], settings: Settings
) -> list[BalanceCheck]:
    return await check(
        db,
        clock,
        providers,
        thresholds(settings),
        staff_chat_id=settings.STAFF_CHAT_ID,
        currencies={i.name: i.currency for i in settings.provider_instances},
    )
