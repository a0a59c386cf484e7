"""One circuit breaker per provider, on top of ``purgatory``.

Every call to a provider goes through ``GuardedProvider``, which asks the provider's breaker
first. Rules:

* Failures that say something about the provider's health count: transient errors, outcome
  unknown, account errors, and anything unexpected. ``threshold`` consecutive failures open
  the breaker; while open, calls fail at once with ``BreakerOpen`` (the provider is not
  called), so routing fails over immediately. After ``ttl_s`` the next call is let through as
  a probe (half-open): success closes the breaker, failure re-opens it.
* ``BusinessError`` (no stock, price too high, early cancel…) is a healthy answer: excluded
  from counting (purgatory's ``exclude``, which treats it like a success).
* ``asyncio.CancelledError`` is *neutral*: our own timeout or shutdown says nothing about the
  provider, so it neither counts as a failure nor resets the count (purgatory's exclude would
  count it as a success, which would let a hanging provider that callers keep timing out
  never trip the breaker).
* The breaker's own bookkeeping must never lose a provider's answer: if storing the outcome
  fails (Redis down), the error is logged and the provider's result is still returned. If the
  breaker cannot be *read* before a call, the call is refused with ``ProviderUnavailable``
  without reaching the provider, which routing treats like any transient failure.

Time. purgatory's state objects read ``time.time()`` in two places: when the breaker opens
(``opened_at``) and when a call meets an open breaker (is the TTL over?). The board makes
both decisions itself with its own clock, through purgatory's public model, and leaves
purgatory's module untouched (no patch, so other users of purgatory in the process, and
purgatory upgrades within 3.x, are unaffected): before a call, an open breaker whose TTL is
over on the board's clock is moved to half-open (``set_state``), and one whose TTL is not
over refuses the call without asking purgatory; after a call, the board records the outcome
itself (what ``AsyncCircuitBreaker.__aexit__`` does) and re-stamps a breaker that just opened
with the board's clock before the state change is stored. So a board built with a
``FakeClock`` has a TTL the test moves by ``clock.advance(...)``, and a board with
``SystemClock`` behaves as stock purgatory does.

State lives in memory by default, or in Redis (``redis_url``; purgatory's
``AsyncRedisUnitOfWork``) so several processes share one view. ``states()`` and
``is_available()`` are synchronous and answer from what this process last saw; ``astates()``
re-reads the shared store first. Routing may use ``is_available`` as a hint only: the guard
itself always consults the store, so an open breaker is honoured even when the hint is stale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from purgatory import AsyncCircuitBreakerFactory, AsyncInMemoryUnitOfWork, AsyncRedisUnitOfWork
from purgatory.domain.messages.events import ContextChanged
from purgatory.domain.model import HalfOpenedState, OpenedState

from core.clock import Clock, SystemClock
from core.providers.base import (
    ActivationStatus,
    Balance,
    Capabilities,
    Offer,
    Provider,
    Rental,
    RentRequest,
)
from core.providers.errors import BreakerOpen, BusinessError, ProviderUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
CLOSED, OPENED, HALF_OPENED = "closed", "opened", "half-opened"


@dataclass(frozen=True, slots=True)
class BreakerInfo:
    state: str  # 'closed' | 'opened' | 'half-opened' (as last stored; see is_available)
    failure_count: int
    last_error: str | None
    opened_at: datetime | None
    last_error_at: datetime | None = None


@dataclass(slots=True)
class _Seen:
    state: str = CLOSED
    failure_count: int = 0
    opened_at: float | None = None


class BreakerBoard:
    def __init__(
        self,
        threshold: int = 5,
        ttl_s: float = 30,
        redis_url: str | None = None,
        clock: Clock | None = None,
        *,
        namespace: str = "numbershop",
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        if ttl_s <= 0:
            raise ValueError("ttl_s must be greater than zero")
        self.threshold = threshold
        self.ttl_s = float(ttl_s)
        self.clock: Clock = clock or SystemClock()
        self.redis_url = redis_url
        self.namespace = namespace
        uow = AsyncRedisUnitOfWork(redis_url) if redis_url else AsyncInMemoryUnitOfWork()
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=threshold, default_ttl=self.ttl_s, exclude=[BusinessError], uow=uow
        )
        self._factory.add_listener(self._on_event)
        self._ready = redis_url is None
        self._init_lock: asyncio.Lock | None = None
        self._names: list[str] = []
        self._seen: dict[str, _Seen] = {}
        self._last_error: dict[str, tuple[str, datetime]] = {}

    # --- public ---------------------------------------------------------------------

    def guard(self, provider: Provider) -> GuardedProvider:
        if isinstance(provider, GuardedProvider):
            if provider.board is not self:
                raise ValueError(f"provider {provider.name} is guarded by another board")
            return provider
        if provider.name not in self._names:
            self._names.append(provider.name)
        return GuardedProvider(provider, self)

    def states(self) -> dict[str, BreakerInfo]:
        names = list(self._names) + [n for n in self._seen if n not in self._names]
        return {name: self._info(name) for name in names}

    async def astates(self) -> dict[str, BreakerInfo]:
        """``states()`` after re-reading the shared store (Redis): what other processes did."""
        try:
            await self._ensure_ready()
            for name in list(self._names):
                async with self._factory.uow as uow:
                    context = await uow.contexts.get(self._circuit(name))
                if context is not None:
                    self._remember(name, context)
        except Exception as exc:  # a dashboard must still render: show the local view
            log.warning("breaker state store unreadable: %s", _describe(exc))
        return self.states()

    async def aclose(self) -> None:
        """Close the Redis connection pool, if any."""
        redis = getattr(self._factory.uow.contexts, "redis", None)
        if redis is not None:
            await redis.aclose()

    def is_available(self, name: str) -> bool:
        """Closed, half-open, or open with its TTL over (the next call will be the probe)."""
        seen = self._seen.get(name)
        if seen is None or seen.state != OPENED:
            return True
        if seen.opened_at is None:
            return False
        return self.clock.now().timestamp() > seen.opened_at + self.ttl_s

    async def call(self, name: str, op: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` (one provider operation) through ``name``'s breaker."""
        try:
            await self._ensure_ready()
            breaker = await self._factory.get_breaker(self._circuit(name))
        except Exception as exc:
            log.error("breaker %s: state store unavailable (%s); %s refused", name, _describe(exc), op)
            raise ProviderUnavailable(f"{name}: circuit breaker state unavailable", provider=name) from exc
        context = breaker.context
        if context.state == OPENED:
            if not self._ttl_over(context.opened_at):
                self._remember(name, context)
                until = self._until(name)
                when = f" until {until:%H:%M:%S} UTC" if until else ""
                raise BreakerOpen(f"{name} is failing; its circuit breaker is open{when}", provider=name)
            context.set_state(HalfOpenedState())  # this call is the probe
        context.handle_new_request()  # closed or half-open: no clock involved
        try:
            result = await fn(*args)
        except asyncio.CancelledError:
            await self._settle(name, breaker, None, neutral=True)
            raise
        except BaseException as exc:
            if not isinstance(exc, BusinessError):
                self._last_error[name] = (f"{op}: {_describe(exc)}", self.clock.now())
            await self._settle(name, breaker, exc)
            raise
        await self._settle(name, breaker, None)
        return result

    # --- internals ------------------------------------------------------------------

    def _circuit(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def _name_of(self, circuit: str) -> str:
        prefix = f"{self.namespace}:"
        return circuit[len(prefix) :] if circuit.startswith(prefix) else circuit

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        if self._init_lock is None:
            self._init_lock = asyncio.Lock()
        async with self._init_lock:
            if not self._ready:
                await self._factory.initialize()
                self._ready = True

    def _ttl_over(self, opened_at: float | None) -> bool:
        return opened_at is None or self.clock.now().timestamp() > opened_at + self.ttl_s

    def _stamp_opening(self, context: Any) -> None:
        """A breaker that just opened was stamped by purgatory with ``time.time()``: replace
        that state change, still unstored, with one stamped by the board's clock."""
        stale = [m for m in context.messages if isinstance(m, ContextChanged) and m.state == OPENED]
        if not stale:
            return
        context.messages[:] = [m for m in context.messages if not any(m is s for s in stale)]
        opened = OpenedState(context.name)
        opened.opened_at = self.clock.now().timestamp()
        context.set_state(opened)

    async def _settle(
        self, name: str, breaker: Any, exc: BaseException | None, *, neutral: bool = False
    ) -> None:
        """Record the outcome (what purgatory's ``__aexit__`` does, with the board's clock);
        a failure to record is logged, never raised over the result."""
        context = breaker.context
        try:
            if not neutral:
                if exc is None:
                    context.handle_end_request()
                else:
                    context.handle_exception(exc)  # BusinessError: excluded, as a success
                self._stamp_opening(context)
            while context.messages:
                await breaker.messagebus.handle(context.messages.pop(0), breaker.uow)
        except Exception as store_exc:
            log.error("breaker %s: could not record the outcome (%s)", name, _describe(store_exc))
        finally:
            self._remember(name, breaker.context)

    def _remember(self, name: str, context: Any) -> None:
        seen = self._seen.setdefault(name, _Seen())
        seen.state = context.state
        seen.opened_at = context.opened_at if context.state != CLOSED else None
        if context.failure_count is not None:
            seen.failure_count = int(context.failure_count)
        elif context.state == CLOSED:
            seen.failure_count = 0

    def _on_event(self, circuit: str, kind: str, event: Any) -> None:
        name = self._name_of(circuit)
        seen = self._seen.setdefault(name, _Seen())
        if kind == "failed":
            seen.failure_count = int(event.failure_count)
        elif kind == "recovered":
            seen.failure_count = 0
        elif kind == "state_changed":
            before = seen.state
            seen.state = event.state
            seen.opened_at = event.opened_at if event.state != CLOSED else None
            if event.state == CLOSED:
                seen.failure_count = 0
            last = self._last_error.get(name)
            reason = f"; last error: {last[0]}" if last and event.state == OPENED else ""
            log.warning("breaker %s: %s -> %s%s", name, before, event.state, reason)

    def _until(self, name: str) -> datetime | None:
        seen = self._seen.get(name)
        if seen is None or seen.opened_at is None:
            return None
        return datetime.fromtimestamp(seen.opened_at + self.ttl_s, UTC)

    def _info(self, name: str) -> BreakerInfo:
        seen = self._seen.get(name) or _Seen()
        last = self._last_error.get(name)
        return BreakerInfo(
            state=seen.state,
            failure_count=seen.failure_count,
            last_error=last[0] if last else None,
            opened_at=datetime.fromtimestamp(seen.opened_at, UTC) if seen.opened_at is not None else None,
            last_error_at=last[1] if last else None,
        )


class GuardedProvider:
    """The same Provider port, every upstream call routed through the provider's breaker.

    Attributes that are not part of the port (a simulator's ``deliver_code``, ``calls``…) are
    read from the wrapped provider, unguarded; ``inner`` is the wrapped provider itself.
    """

    def __init__(self, inner: Provider, board: BreakerBoard) -> None:
        self.inner = inner
        self.board = board
        self.name: str = inner.name
        self.capabilities: Capabilities = inner.capabilities

    def __getattr__(self, attr: str) -> Any:
        if attr == "inner":  # not set yet (e.g. during copy): never recurse
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def __repr__(self) -> str:
        return f"<GuardedProvider {self.name}>"

    async def catalogue(self) -> list[Offer]:
        return await self.board.call(self.name, "catalogue", self.inner.catalogue)

    async def rent(self, request: RentRequest) -> Rental:
        return await self.board.call(self.name, "rent", self.inner.rent, request)

    async def status(self, activation_id: str) -> ActivationStatus:
        return await self.board.call(self.name, "status", self.inner.status, activation_id)

    async def batch_status(self, activation_ids: list[str]) -> dict[str, ActivationStatus]:
        return await self.board.call(self.name, "batch_status", self.inner.batch_status, activation_ids)

    async def cancel(self, activation_id: str) -> None:
        return await self.board.call(self.name, "cancel", self.inner.cancel, activation_id)

    async def finish(self, activation_id: str) -> None:
        return await self.board.call(self.name, "finish", self.inner.finish, activation_id)

    async def request_another_code(self, activation_id: str) -> None:
        return await self.board.call(
            self.name, "request_another_code", self.inner.request_another_code, activation_id
        )

    async def active_activations(self) -> list[Rental]:
        return await self.board.call(self.name, "active_activations", self.inner.active_activations)

    async def balance(self) -> Balance:
        return await self.board.call(self.name, "balance", self.inner.balance)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
