"""numbershop.runtime: start in order, stop in reverse, a failure stops everything, a stop
during start-up does not wait for a hanging component, in-flight tasks get to finish."""

from __future__ import annotations

import asyncio

import pytest

from numbershop.runtime import Component, ComponentFailed, drain_tasks, serve


class Probe(Component):
    def __init__(
        self,
        name: str,
        log: list[str],
        *,
        fail_start: bool = False,
        hang_start: bool = False,
        background: bool = False,
    ) -> None:
        self.name = name
        self.log = log
        self.fail_start = fail_start
        self.hang_start = hang_start
        self.background = background
        self.crash = asyncio.Event()
        self.stopped = asyncio.Event()
        self.task = None

    async def start(self) -> str:
        self.log.append(f"start {self.name}")
        if self.hang_start:
            await asyncio.Event().wait()
        if self.fail_start:
            raise OSError("port in use")
        if self.background:
            self.task = asyncio.create_task(self._run())
        return f"{self.name} up"

    async def _run(self) -> None:
        await self.crash.wait()
        raise RuntimeError("lost the socket")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.stopped.set()


async def test_starts_in_order_and_stops_in_reverse_when_asked() -> None:
    log: list[str] = []
    parts = [Probe(n, log) for n in ("web", "bot", "jobs")]
    stop = asyncio.Event()
    runner = asyncio.create_task(serve(parts, stop))
    await asyncio.wait_for(_until(lambda: len(log) == 3), 5)
    assert not runner.done()
    stop.set()
    await asyncio.wait_for(runner, 5)
    assert log == ["start web", "start bot", "start jobs", "stop jobs", "stop bot", "stop web"]


async def test_a_component_that_cannot_start_stops_the_ones_before_it() -> None:
    log: list[str] = []
    parts = [Probe("web", log), Probe("bot", log, fail_start=True), Probe("jobs", log)]
    with pytest.raises(ComponentFailed, match="bot could not start: OSError: port in use"):
        await asyncio.wait_for(serve(parts, asyncio.Event()), 5)
    assert log == ["start web", "start bot", "stop bot", "stop web"]


async def test_a_component_dying_later_stops_everything_with_its_reason() -> None:
    log: list[str] = []
    dying = Probe("bot", log, background=True)
    parts = [Probe("web", log), dying, Probe("jobs", log)]
    runner = asyncio.create_task(serve(parts, asyncio.Event()))
    await asyncio.wait_for(_until(lambda: len(log) == 3), 5)
    dying.crash.set()
    with pytest.raises(ComponentFailed, match="bot failed: RuntimeError: lost the socket"):
        await asyncio.wait_for(runner, 5)
    assert log[3:] == ["stop jobs", "stop bot", "stop web"]


async def test_a_stop_during_start_up_does_not_wait_for_a_hanging_component() -> None:
    log: list[str] = []
    first = Probe("web", log)
    parts = [first, Probe("provider", log, hang_start=True), Probe("jobs", log)]
    stop = asyncio.Event()
    runner = asyncio.create_task(serve(parts, stop))
    await asyncio.wait_for(_until(lambda: len(log) == 2), 5)
    stop.set()
    await asyncio.wait_for(runner, 5)
    assert log == ["start web", "start provider", "stop provider", "stop web"]
    assert first.stopped.is_set()


async def test_drain_lets_in_flight_work_finish_and_cancels_what_overstays() -> None:
    release = asyncio.Event()
    finished: list[str] = []

    async def handler() -> None:
        await release.wait()
        finished.append("handler")

    async def stuck() -> None:
        await asyncio.Event().wait()

    quick = asyncio.create_task(handler())
    late = asyncio.create_task(stuck())
    asyncio.get_running_loop().call_soon(release.set)
    await drain_tasks(timeout=1.0)
    assert finished == ["handler"] and quick.done()
    assert late.cancelled()


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def test_a_job_cut_by_the_shutdown_is_one_info_line_not_a_traceback(caplog) -> None:
    import logging

    from numbershop.commands.run import CutJobNotice

    logger = logging.getLogger("apscheduler.executors.test-cut")
    logger.addFilter(CutJobNotice())
    with caplog.at_level(logging.INFO, logger=logger.name):
        try:
            raise asyncio.CancelledError()
        except asyncio.CancelledError:
            logger.exception('Job "%s" raised an exception', "poll (trigger: interval)")
        try:
            raise ValueError("a real bug")
        except ValueError:
            logger.exception('Job "%s" raised an exception', "expire")
    cut, bug = caplog.records
    assert (cut.levelname, cut.exc_info) == ("INFO", None)
    assert cut.getMessage() == (
        "job poll (trigger: interval) stopped mid-run by the shutdown; it resumes on the next start"
    )
    assert bug.levelname == "ERROR" and bug.exc_info is not None  # real failures stay loud


async def test_the_bot_counts_updates_in_flight_from_the_first_middleware_on() -> None:
    from numbershop.commands.run import InFlightUpdates

    release = asyncio.Event()
    seen: list[int] = []

    class Dispatcher:
        async def feed_update(self, bot: object, update: int) -> int:
            await release.wait()
            seen.append(update)
            return update

    dp = Dispatcher()
    in_flight = InFlightUpdates(dp)
    handlers = [asyncio.create_task(dp.feed_update(None, n)) for n in (1, 2)]
    await asyncio.sleep(0)
    assert await in_flight.wait(0.05) == 2  # both still being handled
    release.set()
    assert await in_flight.wait(5) == 0
    assert sorted(seen) == [1, 2] and [t.result() for t in handlers] == [1, 2]
    assert in_flight.tasks == set()
