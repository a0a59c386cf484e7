"""APScheduler wiring: the tickers on an ``AsyncIOScheduler``, started while this process leads.

Each ticker is an interval job with ``max_instances=1`` and ``coalesce=True``: a run that
takes longer than its interval delays the next one instead of stacking copies, and runs
missed while the loop was busy collapse into one. The scheduler itself is rebuilt whenever
leadership is (re)gained, so a process that lost the lock and got it back starts clean.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

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


def build_scheduler(tickers: list[Ticker]) -> AsyncIOScheduler:
    """An AsyncIOScheduler (not started) with one interval job per ticker."""
    sched = AsyncIOScheduler(timezone=UTC)
    for ticker in tickers:
        sched.add_job(ticker.run, IntervalTrigger(seconds=ticker.interval_s, timezone=UTC),
                      id=ticker.name, name=ticker.name, coalesce=True, max_instances=1,
                      misfire_grace_time=max(30, int(ticker.interval_s)))
    return sched


async def run_scheduler(
    core: CoreLike, *, stop: asyncio.Event, owner: str | None = None,
    leadership: Leadership | None = None,
) -> None:
    """Run the tickers until ``stop`` is set, only while this process leads."""
    shop_jobs = ShopJobs(core, owner=owner)
    leadership = leadership or leadership_for(core.db.url)
    try:
        while await leadership.acquire(stop):
            sched = build_scheduler(shop_jobs.tickers())
            sched.start()
            log.info("scheduler %s: %d tickers running", shop_jobs.owner, len(sched.get_jobs()))
            try:
                await leadership.watch(stop)
            finally:
                sched.shutdown(wait=False)
    finally:
        await leadership.release()
