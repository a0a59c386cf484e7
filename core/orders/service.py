"""``OrderService``: the one front every adapter calls. Each method hands over to the module
that does that job (``purchase``, ``codes``, ``closing``, ``upstream``, ``polling``,
``recovery``); those take the service as their context (database, clock, providers,
settings), and reach each other's public steps through it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from core import jobs
from core.backoff import Backoff
from core.clock import Clock
from core.config import Settings
from core.db.engine import Database
from core.order_states import UpstreamState
from core.orders import closing, codes, polling, purchase, recovery, timer, upstream, view
from core.orders.view import AnotherCodeResult, CancelResult, DoneResult, OrderDetail, OrderView
from core.providers.base import ActivationStatus, Provider, SmsMessage

# Retries of an upstream cancel or finish: 15 s, 30 s, … up to 10 minutes, with jitter.
UPSTREAM_BACKOFF = Backoff(base=15, cap=600, floor=5)


class OrderService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        providers: Mapping[str, Provider],
        settings: Settings,
        board: Any | None = None,
        *,
        upstream_backoff: Backoff = UPSTREAM_BACKOFF,
    ) -> None:
        self.db = db
        self.clock = clock
        self.providers = providers
        self.settings = settings
        self.board = board  # BreakerBoard: routing skips providers whose breaker is open
        self.upstream_backoff = upstream_backoff
        # Upstream closes running after their caller answered (``upstream.start_close``).
        self.background: set[asyncio.Task[None]] = set()
        self._worker_id: str | None = None

    @property
    def worker_id(self) -> str:
        """This service's lease-owner name, unique per instance."""
        if self._worker_id is None:
            self._worker_id = jobs.new_owner()
        return self._worker_id

    async def drain_background(self, timeout: float | None = None) -> None:
        """Wait for the upstream closes started in the background (tests, shutdown). After
        ``timeout`` the rest are cancelled: the retry job finishes them."""
        while self.background:
            pending = set(self.background)
            done, left = await asyncio.wait(pending, timeout=timeout)
            if left:
                for task in left:
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*left, return_exceptions=True)
                return

    # ----------------------------------------------------------------- reads
    async def get_order(self, order_id: str, *, user_id: int | None = None) -> OrderView:
        """The order; ``user_id`` restricts to its owner (a foreign order looks unknown)."""
        return await view.get_order(self.db, order_id, user_id=user_id)

    async def get_order_detail(self, order_id: str) -> OrderDetail:
        return await view.get_order_detail(self.db, order_id)

    async def list_orders(
        self,
        *,
        user_id: int | None = None,
        status: str | None = None,
        limit: int = 20,
        before: tuple[datetime, str] | None = None,
    ) -> list[OrderView]:
        """Newest first; ``before`` is the (created_at, id) keyset cursor of the last row seen."""
        return await view.list_orders(self.db, user_id=user_id, status=status, limit=limit, before=before)

    # ------------------------------------------------------------- purchase
    async def purchase(
        self,
        *,
        user_id: int,
        quote_id: str,
        idempotency_key: str,
        chat_id: int | None = None,
        message_id: int | None = None,
    ) -> OrderView:
        """Buy the quoted number. Safe to call again with the same key: it buys once.

        Raises InsufficientFunds / QuoteExpired / QuoteNotFound / UserBlocked before any
        money moves, ``AlreadyInProgress`` while the first attempt with this key is still
        renting, and ``NoProviderAvailable`` after voiding the hold when no provider could
        supply a number. Returns the order (``waiting``, or ``reserving`` when the provider's
        answer was lost and recovery will settle it).
        """
        return await purchase.purchase(
            self,
            user_id=user_id,
            quote_id=quote_id,
            idempotency_key=idempotency_key,
            chat_id=chat_id,
            message_id=message_id,
        )

    # ---------------------------------------------------------------- codes
    async def record_messages(
        self, order_id: str, messages: Iterable[SmsMessage], *, actor: str = "scheduler"
    ) -> OrderView:
        """Record SMS for an order; the first code completes it and captures the hold."""
        return await codes.record_messages(self, order_id, messages, actor=actor)

    async def record_many(
        self,
        items: Iterable[tuple[str, Iterable[SmsMessage]]],
        *,
        actor: str = "scheduler",
    ) -> list[OrderView | None]:
        return await codes.record_many(self, items, actor=actor)

    async def check_now(self, order_id: str, *, user_id: int | None = None) -> OrderView:
        """Ask the provider once for this order's messages (the user's Check now button)."""
        return await codes.check_now(self, order_id, user_id=user_id)

    async def request_another_code(self, order_id: str, *, user_id: int | None = None) -> AnotherCodeResult:
        """Ask the provider for one more code on an open number (free); a double tap asks
        once. ``OrderStateConflict`` when the number is closed or the provider can't."""
        return await codes.request_another_code(self, order_id, user_id=user_id)

    async def done(self, order_id: str, *, user_id: int | None = None, actor: str = "user") -> DoneResult:
        """The buyer is done: finish the number upstream once (after the answer).
        ``already`` when it was closed before; ``OrderStateConflict`` unless completed."""
        return await closing.done(self, order_id, user_id=user_id, actor=actor)

    async def apply_upstream_status(
        self,
        order_id: str,
        status: ActivationStatus,
        *,
        actor: str,
    ) -> OrderView:
        """Bring an order in line with what its provider reports (reconciliation)."""
        order = await self.get_order(order_id)
        if order.status not in ("waiting", "completed"):
            return order
        return await codes.apply_status(self, order, status, actor=actor)

    # -------------------------------------------------------------- closing
    async def cancel(
        self,
        order_id: str,
        *,
        user_id: int | None = None,
        actor: str = "user",
        reason: str | None = None,
    ) -> CancelResult:
        """Cancel and refund at once; the upstream cancel follows after the answer and is
        retried if denied. A second cancel returns ``already=True`` and refunds nothing. If
        a code arrived in the meantime the order completes instead (``completed_instead``).
        """
        return await closing.cancel(self, order_id, user_id=user_id, actor=actor, reason=reason)

    async def expire(self, order_id: str, *, actor: str = "scheduler") -> OrderView:
        return await closing.expire(self, order_id, actor=actor)

    async def fail(
        self,
        order_id: str,
        *,
        reason: str,
        actor: str = "system",
        notify: bool = True,
        detail: dict[str, Any] | None = None,
        upstream_state: UpstreamState | None = None,
    ) -> OrderView:
        return await closing.fail(
            self,
            order_id,
            reason=reason,
            actor=actor,
            notify=notify,
            detail=detail,
            upstream_state=upstream_state,
        )

    async def staff_refund(
        self,
        order_id: str,
        *,
        actor: str,
        reason: str,
        idempotency_key: str | None = None,
    ) -> OrderView:
        """Return a completed order's price to the wallet (revenue → wallet, posted)."""
        return await closing.staff_refund(
            self, order_id, actor=actor, reason=reason, idempotency_key=idempotency_key
        )

    async def settle_closed_order_hold(self, order_id: str, *, actor: str) -> bool:
        return await closing.settle_closed_order_hold(self, order_id, actor=actor)

    # ------------------------------------------------------ scheduled work
    async def retry_upstream(self, *, owner: str | None = None, limit: int = 100) -> int:
        return await upstream.retry_upstream(self, owner=owner, limit=limit)

    async def poll_due(
        self,
        *,
        owner: str | None = None,
        limit: int = 1000,
        tick_seconds: float = 0.0,
        max_rounds: int = 50,
    ) -> int:
        """Poll every order whose ``next_poll_at`` has come, in claimed batches of ``limit``,
        rescheduling each in the claim itself. Returns how many orders got their first code.

        ``tick_seconds`` is the poll ticker's period. Each round's lease ends when the round
        is done; if the poller dies mid-round, it ends when the orders are due again, and
        whoever polls next takes them."""
        return await polling.poll_due(
            self, owner=owner, limit=limit, tick_seconds=tick_seconds, max_rounds=max_rounds
        )

    async def poll_orders(self, order_ids: Iterable[str], *, owner: str | None = None) -> int:
        """Fetch status for these orders, one batch call per provider where the protocol
        allows, otherwise bounded concurrency; record new messages. Returns how many orders
        got their first code. With ``owner``, that owner's leases on these orders end once
        they are polled, so expiry or an upstream retry can take them at once."""
        return await polling.poll_orders(self, order_ids, owner=owner)

    async def expire_due(self, *, owner: str | None = None, limit: int = 100) -> int:
        """Expire waiting orders past their deadline (each after a final check for a code)."""
        return await recovery.expire_due(self, owner=owner, limit=limit)

    async def finish_due(self, *, owner: str | None = None, limit: int = 100) -> int:
        """Finish upstream the open numbers whose deadline passed (never cancel: paid for)."""
        return await closing.finish_due(self, owner=owner, limit=limit)

    async def redraw_due(self, *, limit: int = 1000) -> int:
        """Queue the waiting orders' timer redraws and 5-minute reminders that are due."""
        return await timer.redraw_due(self, limit=limit)

    async def recover_reserving(self, *, owner: str | None = None, limit: int = 50) -> int:
        """Settle orders left ``reserving`` (crash, or a rent whose answer was lost).

        Idempotent providers are asked again with the same key; others are searched for an
        activation nobody owns; if none is found, the order fails and the hold is voided (an
        activation that shows up later is an orphan the reconciliation cancels).
        """
        return await recovery.recover_reserving(self, owner=owner, limit=limit)

    async def recover_order(self, order_id: str) -> OrderView:
        """Settle one ``reserving`` order now; a provider that fails leaves it for later."""
        return await recovery.recover_order(self, order_id)

    async def resolve_overdue_holds(
        self,
        *,
        owner: str | None = None,
        grace_seconds: float = 0,
        limit: int = 100,
    ) -> int:
        """Safety net: a hold past its timeout is settled through its order's transition
        (expire a waiting order, fail a reserving one), never voided behind its back.
        A closed order whose hold is still unresolved is the reconciliation's to report."""
        return await recovery.resolve_overdue_holds(
            self, owner=owner, grace_seconds=grace_seconds, limit=limit
        )

    async def settle_overdue(self, order_id: str, *, actor: str) -> OrderView:
        """Close an order that outlived its deadline or its hold: expire a waiting one
        (final check first), fail a reserving one. Money follows the transition."""
        return await recovery.settle_overdue(self, order_id, actor=actor)
