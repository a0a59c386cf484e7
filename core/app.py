"""The composition object every adapter (bot, dashboard, scheduler, CLI) builds once.

It owns the database engine, the clock, the providers behind their breakers and the core
services, so each adapter wires the same behaviour and nothing is constructed twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.clock import Clock, SystemClock
from core.config import Settings
from core.cryptopay import CryptoPay
from core.db.engine import Database
from core.orders import OrderService
from core.promo import Promos
from core.providers.base import Provider
from core.providers.breaker import BreakerBoard
from core.star_refunds import BotApiStarRefunds, StarRefunds
from core.wallets import Wallets


@dataclass
class Core:
    settings: Settings
    db: Database
    clock: Clock
    board: BreakerBoard
    providers: Mapping[str, Provider]
    wallets: Wallets
    orders: OrderService
    promos: Promos
    star_refunds: StarRefunds
    cryptopay: CryptoPay | None = None  # Crypto Pay top-ups, when CRYPTOPAY_TOKEN is set

    async def aclose(self) -> None:
        await self.orders.drain_background(timeout=5)  # upstream closes still under way
        for provider in self.providers.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()
        if self.cryptopay is not None:
            await self.cryptopay.aclose()
        await self.board.aclose()
        await self.db.dispose()


def build_core(
    settings: Settings,
    *,
    clock: Clock | None = None,
    providers: Mapping[str, Provider] | None = None,
    db: Database | None = None,
    board: BreakerBoard | None = None,
) -> Core:
    """Wire core from settings. Tests pass their own clock, providers (already guarded or
    not) and database."""
    from core.providers.registry import build_providers

    clock = clock or SystemClock()
    db = db or Database(settings.DATABASE_URL)
    board = board or BreakerBoard(redis_url=settings.REDIS_URL, clock=clock)
    if providers is None:
        providers = build_providers(settings, clock, board)
    return Core(
        settings=settings,
        db=db,
        clock=clock,
        board=board,
        providers=providers,
        wallets=Wallets(db, clock, settings.SHOP_CURRENCY),
        orders=OrderService(db, clock, providers, settings, board=board),
        cryptopay=CryptoPay(db, clock, settings) if settings.CRYPTOPAY_TOKEN else None,
        promos=Promos(db, clock),
        star_refunds=StarRefunds(
            db,
            clock,
            BotApiStarRefunds(settings.TELEGRAM_API_URL, settings.BOT_TOKEN) if settings.BOT_TOKEN else None,
        ),
    )
