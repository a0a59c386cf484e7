"""Build the configured providers, each behind its circuit breaker, in priority order.

The HTTP adapters are imported only when configured, so a shop running on the simulator
never loads them. A provider named in ``PROVIDERS`` without its credentials fails at start
with one line naming the missing variables (``ConfigError``), not at the first purchase.
"""

from __future__ import annotations

from collections.abc import Callable

from core.clock import Clock
from core.config import KNOWN_PROVIDERS, ConfigError, Settings
from core.providers.base import Provider
from core.providers.breaker import BreakerBoard

# Variables each HTTP provider needs; the adapters re-check, this gives the one-line error.
REQUIRED_SETTINGS: dict[str, tuple[str, ...]] = {
    "smsactivate": ("SMSACTIVATE_API_KEY",),
    "textverified": ("TEXTVERIFIED_API_USERNAME", "TEXTVERIFIED_API_KEY"),
    "fivesim": ("FIVESIM_API_KEY",),
}


def build_providers(settings: Settings, clock: Clock, board: BreakerBoard) -> dict[str, Provider]:
    """``{name: guarded provider}`` in ``PROVIDERS`` order (dicts keep insertion order)."""
    providers: dict[str, Provider] = {}
    for name in settings.PROVIDERS:
        providers[name] = board.guard(build_provider(name, settings, clock))
    return providers


def build_provider(name: str, settings: Settings, clock: Clock) -> Provider:
    """One unguarded provider (the simulator HTTP server and tests want the raw one)."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ConfigError(f"PROVIDERS: unknown provider {name!r}; choose from {', '.join(KNOWN_PROVIDERS)}")
    missing = [var for var in REQUIRED_SETTINGS.get(name, ()) if not getattr(settings, var, None)]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)}: required when PROVIDERS includes {name} (set it in the environment or .env)"
        )
    return factory(settings, clock)


def _simulator(settings: Settings, clock: Clock) -> Provider:
    from core.providers.simulator import SimulatorProvider

    return SimulatorProvider(seed=settings.SIMULATOR_SEED, clock=clock)


def _smsactivate(settings: Settings, clock: Clock) -> Provider:
    from core.providers.smsactivate import SmsActivateProvider

    return SmsActivateProvider.from_settings(settings, clock)


def _textverified(settings: Settings, clock: Clock) -> Provider:
    from core.providers.textverified import TextVerifiedProvider

    return TextVerifiedProvider.from_settings(settings, clock)


def _fivesim(settings: Settings, clock: Clock) -> Provider:
    from core.providers.fivesim import FiveSimProvider

    return FiveSimProvider.from_settings(settings, clock)


_FACTORIES: dict[str, Callable[[Settings, Clock], Provider]] = {
    "simulator": _simulator,
    "smsactivate": _smsactivate,
    "textverified": _textverified,
    "fivesim": _fivesim,
}
