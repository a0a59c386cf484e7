"""Routers per feature.

Each feature module declares its handlers on a ``HandlerSet`` and ``routers()`` builds fresh
aiogram ``Router`` objects from them. A router can belong to one dispatcher only, and tests
and the benchmark build several dispatchers in one process, so routers are made per build.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import Router
from aiogram.filters import Filter
from aiogram.utils.magic_filter import MagicFilter

Registration = tuple[str, Callable[..., Any], tuple[Any, ...]]


class HandlerSet:
    def __init__(self, name: str) -> None:
        self.name = name
        self._registrations: list[Registration] = []

    def _on(
        self, observer: str, filters: tuple[Any, ...]
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            self._registrations.append((observer, func, filters))
            return func

        return register

    def message(self, *filters: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self._on("message", filters)

    def callback_query(self, *filters: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self._on("callback_query", filters)

    def pre_checkout_query(self, *filters: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self._on("pre_checkout_query", filters)

    def router(self) -> Router:
        router = Router(name=self.name)
        for observer, func, filters in self._registrations:
            getattr(router, observer).register(func, *(_inline(f) for f in filters))
        return router


class _Magic(Filter):
    """A magic filter (``F.text``, ``F.successful_payment``…) checked on the event loop.

    aiogram runs every synchronous filter through ``asyncio.to_thread``, and a magic filter
    is synchronous: each check of a microsecond's work took a thread hand-off and a loop
    turn to come back.
    """

    def __init__(self, magic: MagicFilter) -> None:
        self.magic = magic

    async def __call__(self, event: Any) -> Any:
        return self.magic.resolve(event)


def _inline(f: Any) -> Any:
    return _Magic(f) if isinstance(f, MagicFilter) else f


def routers() -> list[Router]:
    from bot.handlers import (
        balance,
        buy,
        crypto,
        fallback,
        help,
        language,
        orders,
        promo,
        referral,
        search,
        start,
        steps,
        support,
    )

    # start first (it also leaves any half-typed input), fallback last (it catches the rest).
    first = (
        start,
        help,
        support,
        language,
        promo,
        referral,
        balance,
        crypto,
        orders,
        steps,
        search,
        buy,
        fallback,
    )
    return [m.handlers.router() for m in first]
