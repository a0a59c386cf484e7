"""Build the configured provider instances, each behind its circuit breaker, in priority order.

``settings.provider_instances`` (``core/providers/instances.py``) has already checked every
instance's settings, so a bad key, URL or currency stopped start-up with one line. The HTTP
adapters are imported only when an instance uses them, so a shop running on the simulator
never loads them.
"""

from __future__ import annotations

from collections.abc import Callable

from core.clock import Clock
from core.config import ConfigError, Settings
from core.providers.base import Provider
from core.providers.breaker import BreakerBoard
from core.providers.instances import ProviderInstance


def build_providers(settings: Settings, clock: Clock, board: BreakerBoard) -> dict[str, Provider]:
    """``{name: guarded provider}`` in ``PROVIDERS`` order (dicts keep insertion order)."""
    providers: dict[str, Provider] = {}
    for instance in settings.provider_instances:
        providers[instance.name] = board.guard(build_instance(instance, settings, clock))
    return providers


def build_provider(name: str, settings: Settings, clock: Clock) -> Provider:
    """One unguarded provider by instance name (the simulator HTTP server and tests want it)."""
    for instance in settings.provider_instances:
        if instance.name == name:
            return build_instance(instance, settings, clock)
    raise ConfigError(f"PROVIDERS: no provider named {name!r} (configured: {', '.join(settings.PROVIDERS)})")


def build_instance(instance: ProviderInstance, settings: Settings, clock: Clock) -> Provider:
    return _FACTORIES[instance.kind](instance, settings, clock)


def _simulator(instance: ProviderInstance, settings: Settings, clock: Clock) -> Provider:
    from core.providers.simulator import SimulatorProvider

    return SimulatorProvider(seed=instance.seed, clock=clock, name=instance.name)


def _handlerapi(instance: ProviderInstance, settings: Settings, clock: Clock) -> Provider:
    from core.providers.handlerapi import HandlerApiProvider

    return HandlerApiProvider.from_instance(instance, settings.SHOP_CURRENCY, clock)


def _textverified(instance: ProviderInstance, settings: Settings, clock: Clock) -> Provider:
    from core.providers.textverified import TextVerifiedProvider

    return TextVerifiedProvider.from_instance(instance, settings.SHOP_CURRENCY, clock)


def _fivesim(instance: ProviderInstance, settings: Settings, clock: Clock) -> Provider:
    from core.providers.fivesim import FiveSimProvider

    return FiveSimProvider.from_instance(instance, settings.SHOP_CURRENCY, clock)


_FACTORIES: dict[str, Callable[[ProviderInstance, Settings, Clock], Provider]] = {
    "simulator": _simulator,
    "handlerapi": _handlerapi,
    "textverified": _textverified,
    "fivesim": _fivesim,
}
