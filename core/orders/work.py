"""Running a job's work over the orders it claimed.

Each job claims the orders it works on with a lease (``core.jobs``), so two scheduler
processes split the work instead of repeating it. The transitions the jobs apply are
compare-and-set regardless, so even overlapping work never moves money twice; leases only
spare the duplicate provider calls. A worker that dies holding a lease loses it at
``lease_until`` and the next claimer finishes the work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from core import jobs

if TYPE_CHECKING:
    from core.orders.service import OrderService

log = logging.getLogger("core.orders")

POLL_CONCURRENCY = 10
_R = TypeVar("_R")


async def each(
    svc: OrderService,
    ids: list[str],
    work: Callable[[str], Awaitable[_R]],
    *,
    owner: str,
    concurrency: int = POLL_CONCURRENCY,
) -> list[_R | None]:
    """Run ``work(order_id)`` over claimed orders with bounded concurrency, then end the
    leases. One order's failure is logged and does not stop the others. (A crash — a
    BaseException — leaves the leases to expire, as a dead process would.)"""
    sem = asyncio.Semaphore(concurrency)

    async def one(order_id: str) -> _R | None:
        async with sem:
            try:
                return await work(order_id)
            except Exception:
                log.exception("scheduled work on order %s failed; it will be retried", order_id)
                return None

    results = await asyncio.gather(*(one(i) for i in ids))
    await jobs.release_orders(svc.db, ids, owner)
    return list(results)
