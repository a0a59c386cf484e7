"""APScheduler wiring: the tickers on an ``AsyncIOScheduler``, started while this process leads.

Each ticker is an interval job with ``max_instances=1`` and ``coalesce=True``: a run that
takes longer than its interval delays the next one instead of stacking copies, and runs
missed while the loop was busy collapse into one. The scheduler itself is rebuilt whenever
leadership is (re)gained, so a process that lost the lock and got it back starts clean.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]  # APScheduler 3 ships no type hints
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]  # APScheduler 3 ships no type hints

from scheduler.leader import Leadership, leadership_for
from scheduler.tickers import CoreLike, ShopJobs, Ticker

log = logging.getLogger(__name__)


class _SkipNotice(logging.Filter):
    """A ticker still busy when its next run comes is the design, not a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


logging.getLogger("apscheduler.scheduler").addFilter(_SkipNotice())
# "Running job … executed successfully" twice a second from the poll ticker drowns the log;
# job failures are still logged (ERROR) and every run leaves its heartbeat in job_runs.
logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)


STOP_GRACE_S = 10.0


def build_scheduler(tickers: list[Ticker], running: set[asyncio.Task[Any]] | None = None) -> AsyncIOScheduler:
    """An AsyncIOScheduler (not started) with one interval job per ticker. ``running``, when
    given, holds the tasks of the runs in progress, so a stop can wait for them."""
    sched = AsyncIOScheduler(timezone=UTC)
    for ticker in tickers:
        sched.add_job(
            _tracked(ticker.run, running),
            IntervalTrigger(seconds=ticker.interval_s, timezone=UTC),
            id=ticker.name,
            name=ticker.name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(30, int(ticker.interval_s)),
        )
    return sched


def _tracked(
    run: Callable[[], Awaitable[Any]], running: set[asyncio.Task[Any]] | None
) -> Callable[[], Awaitable[Any]]:
    if running is None:
        return run

    async def tracked() -> None:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            await run()
        finally:
            running.discard(task)

    tracked.__name__ = getattr(run, "__name__", "ticker")
    return tracked


async def _stop(sched: AsyncIOScheduler, running: set[asyncio.Task[Any]]) -> None:
    """No new runs; let the runs in progress finish (each is one committed step at a time,
    so one cut at the grace limit resumes safely on the next start); then shut down."""
    if sched.running:
        sched.pause()
    if running:
        await asyncio.wait(set(running), timeout=STOP_GRACE_S)
    sched.shutdown(wait=False)


async def run_scheduler(
    core: CoreLike,
    *,
    stop: asyncio.Event,
    owner: str | None = None,
    leadership: Leadership | None = None,
) -> None:
    """Run the tickers until ``stop`` is set, only while this process leads."""
    shop_jobs = ShopJobs(core, owner=owner)
    leadership = leadership or leadership_for(core.db.url)
    try:
        while await leadership.acquire(stop):
            running: set[asyncio.Task[Any]] = set()
            sched = build_scheduler(shop_jobs.tickers(), running)
            sched.start()
            log.info("scheduler %s: %d tickers running", shop_jobs.owner, len(sched.get_jobs()))
            try:
                await leadership.watch(stop)
            finally:
                await _stop(sched, running)
    finally:
        await leadership.release()
