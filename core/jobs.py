"""Leases on orders for the scheduled jobs, and the jobs' heartbeats in ``job_runs``.

Several scheduler processes may run the same job at once (a leader that is slow to die, a
deployment that briefly runs two). Correctness never depends on there being one: every
state change is a compare-and-set transition, so a second worker can at worst do nothing.
Leases are what keep the second worker from doing the same *work* — the same provider call,
the same final check — twice:

* A claim is one conditional ``UPDATE … WHERE id IN (SELECT … LIMIT n) AND <still due> AND
  <lease free> RETURNING id``. On PostgreSQL the inner select takes ``FOR UPDATE SKIP
  LOCKED`` so concurrent claimers split the due rows instead of queueing on them; on SQLite
  the write transaction is exclusive (``BEGIN IMMEDIATE``) so the UPDATE is atomic anyway.
* The outer ``WHERE`` repeats the conditions, so a row that stopped being due, or was leased
  by someone else, between the pick and the update is not taken.
* A lease ends when its holder releases it, or at ``lease_until`` when the holder died: the
  next claimer takes the row over. Work under a lease is idempotent, so a holder that is only
  slow (its lease expired mid-work) and its successor may overlap harmlessly.

Heartbeats record when each job last started and last finished successfully, and its last
error, so the dashboard can show job lag. A failing job leaves ``last_finished_at`` where it
was: lag keeps growing until the job works again.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, or_, select, update

from core.clock import Clock
from core.db.engine import Database, insert_ignore
from core.db.tables import job_runs, orders

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a job may hold an order before another worker may take it over. (The poller's
# lease instead lasts until the order's next poll: see OrderService.poll_due.)
WORK_LEASE_S = 60.0


def new_owner(prefix: str = "") -> str:
    """A worker identity unique per process and instance: ``host:pid:random``."""
    host = socket.gethostname()[:24]
    return f"{prefix}{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:64]


def lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(orders.c.lease_until.is_(None), orders.c.lease_until < now)


async def claim_orders(
    db: Database,
    *,
    owner: str,
    now: datetime,
    due: Sequence[ColumnElement[bool]],
    order_by: Sequence[Any] = (),
    limit: int = 100,
    lease_seconds: float = WORK_LEASE_S,
    values: dict[str, Any] | None = None,
) -> list[str]:
    """Lease up to ``limit`` orders matching ``due`` to ``owner``; returns their ids.

    ``values`` are set in the same UPDATE (e.g. the next poll time), so claiming and
    rescheduling are one atomic step; they may set ``lease_until`` themselves.
    """
    values = {"lease_owner": owner, "lease_until": now + timedelta(seconds=lease_seconds), **(values or {})}
    conditions = [*due, lease_free(now)]
    pick = select(orders.c.id).where(*conditions).order_by(*order_by).limit(limit)
    stmt = update(orders)
    if db.is_postgres:
        # A materialized CTE runs the locking pick exactly once. As ``id IN (subquery)`` the
        # planner may re-run it per row, and each re-run skips the rows this very statement
        # just updated and returns fresh ones: more than ``limit`` rows get claimed.
        picked = pick.with_for_update(skip_locked=True, of=orders).cte("picked")
        picked = picked.prefix_with("MATERIALIZED")
        stmt = stmt.where(orders.c.id == picked.c.id, *conditions)
    else:
        stmt = stmt.where(orders.c.id.in_(pick.scalar_subquery()), *conditions)
    async with db.begin() as conn:
        rows = (await conn.execute(stmt.values(**values).returning(orders.c.id))).all()
    return [r[0] for r in rows]


async def release_orders(db: Database, ids: Sequence[str], owner: str) -> int:
    """End ``owner``'s leases on these orders (a lease taken over by another stays theirs)."""
    if not ids:
        return 0
    async with db.begin() as conn:
        res = await conn.execute(
            update(orders)
            .where(orders.c.id.in_(list(ids)), orders.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )
    return int(res.rowcount or 0)


# ------------------------------------------------------------------------ heartbeats
async def _touch(db: Database, job: str, **values: Any) -> None:
    async with db.begin() as conn:
        await conn.execute(insert_ignore(conn, job_runs).values(job=job))
        await conn.execute(update(job_runs).where(job_runs.c.job == job).values(**values))


async def record_start(db: Database, job: str, owner: str, now: datetime) -> None:
    await _touch(db, job, last_started_at=now, owner=owner)


async def record_finish(db: Database, job: str, owner: str, now: datetime) -> None:
    await _touch(db, job, last_finished_at=now, last_error=None, owner=owner)


async def record_error(db: Database, job: str, owner: str, now: datetime, error: str) -> None:
    await _touch(db, job, last_error=f"{now.isoformat()} {error}"[:2000], owner=owner)


async def run_job(
    db: Database,
    clock: Clock,
    job: str,
    owner: str,
    work: Callable[[], Awaitable[T]],
) -> T:
    """Run one job with its heartbeat; an error is recorded, logged and raised again."""
    await record_start(db, job, owner, clock.now())
    try:
        result = await work()
    except Exception as exc:
        log.exception("job %s failed", job)
        try:
            await record_error(db, job, owner, clock.now(), f"{type(exc).__name__}: {exc}")
        except Exception:
            log.warning("job %s: could not record its error", job)
        raise
    await record_finish(db, job, owner, clock.now())
    return result
