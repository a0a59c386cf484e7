"""Several long-lived components in one process, started in order and stopped cleanly.

``numbershop run`` is one asyncio process holding the bot, its notification sender, the
scheduler, the dashboard and (without a token) the sandbox's web server. They share one
``Core``, so they must also share one shutdown story:

* **Start in dependency order, stop in reverse.** The sandbox's Bot API server comes up before
  the bot that polls it and goes down after it; the core (database engine, providers) is
  closed by the caller only after every component has stopped.
* **Stopping means finishing, not abandoning.** Each component's ``stop`` lets its in-flight
  work end (the bot stops polling and lets handlers finish, the sender settles its batch, the
  dashboard finishes its requests). Then ``drain_tasks`` waits a bounded time for whatever
  tasks are still running (a handler spawned by the dispatcher, a scheduler job) so nothing is
  cancelled halfway through a transaction while the engine is still open. Whatever does not
  finish in time is cancelled; every state change is a compare-and-set that the scheduler's
  jobs resume (see DESIGN §4), so a cut is safe, only slower.
* **One failing component stops the process.** A component whose background task ends on its
  own (a crash, a lost socket) stops the others and ``serve`` raises ``ComponentFailed`` with
  one line: a half-running shop (a bot without its scheduler) would take orders it never
  completes.
* **Signals** go through ``stop_on_signals``: the first Ctrl-C/SIGTERM asks for a clean stop,
  a second one exits at once (status 130) for an operator who will not wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from core.errors import ShopError

log = logging.getLogger("numbershop.run")

STOP_TIMEOUT_S = 20.0
DRAIN_TIMEOUT_S = 10.0


class ComponentFailed(Exception):
    """A component could not start, or stopped on its own while the process was running."""


class Component:
    """One long-lived part of the process.

    ``start`` brings it up (binding its socket, checking its upstream) and returns a short
    description of where it listens, logged as the component's one line. It may leave a
    background task in ``task``; when that task ends before ``stop`` was asked for, the
    component has failed. ``stop`` must be safe to call after a failed or partial start.
    """

    name: str = "component"
    task: asyncio.Task[Any] | None = None

    async def start(self) -> str:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def failure(self) -> str:
        """One line on why the background task ended."""
        task = self.task
        if task is None or not task.done():
            return f"{self.name} stopped"
        if task.cancelled():
            return f"{self.name} was cancelled"
        exc = task.exception()
        if exc is None:
            return f"{self.name} stopped on its own"
        return f"{self.name} failed: {one_line(exc)}"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def serve(
    components: Sequence[Component], stop: asyncio.Event, ready: Callable[[], None] | None = None
) -> None:
    """Start ``components`` in order, run until ``stop`` is set or one fails, stop them all.

    ``ready`` is called once everything has started. A stop requested while components are
    still starting cancels the start (a provider or a database that hangs must not make
    Ctrl-C wait) and stops those already up.
    """
    started: list[Component] = []
    failed: str | None = None
    try:
        starting = asyncio.create_task(_start_all(components, started), name="start")
        stopper = asyncio.create_task(stop.wait(), name="stop-signal")
        try:
            await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
        error = starting.exception() if starting.done() and not starting.cancelled() else None
        if error is not None:
            stopper.cancel()
            if isinstance(error, ComponentFailed):
                raise error
            raise ComponentFailed(one_line(error)) from error
        if not stop.is_set():
            if ready is not None:
                ready()
            watched = {c.task: c for c in started if c.task is not None}
            done, _ = await asyncio.wait({stopper, *watched}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper:
                    failed = watched[task].failure()
                    log.error("%s; stopping everything", failed)
                    break
        stopper.cancel()
    finally:
        if started:
            log.info("stopping…")
        for component in reversed(started):
            began = asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(component.stop(), STOP_TIMEOUT_S)
                log.debug("%s stopped in %.2fs", component.name, asyncio.get_running_loop().time() - began)
            except TimeoutError:
                log.warning(
                    "%s did not stop within %.0fs; cut off (its work resumes on the next start)",
                    component.name,
                    STOP_TIMEOUT_S,
                )
            except Exception as exc:
                log.warning("%s stopped with an error: %s", component.name, one_line(exc))
    if failed is not None:
        raise ComponentFailed(failed)


async def _start_all(components: Sequence[Component], started: list[Component]) -> None:
    for component in components:
        try:
            where = await component.start()
        except (ComponentFailed, asyncio.CancelledError):
            await _stop_partial(component)  # it may have half-started: a task, a socket
            raise
        except Exception as exc:
            await _stop_partial(component)
            # The shop's own errors are sentences already; anything else names its type.
            reason = str(exc) if isinstance(exc, ShopError) and str(exc) else one_line(exc)
            raise ComponentFailed(f"{component.name} could not start: {reason}") from exc
        started.append(component)
        log.info("%-9s %s", component.name, where)


async def _stop_partial(component: Component) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(component.stop(), STOP_TIMEOUT_S)


async def drain_tasks(timeout: float = DRAIN_TIMEOUT_S) -> None:
    """Let tasks still running (in-flight handlers, jobs) finish, then cancel the rest."""
    current = asyncio.current_task()
    pending = {t for t in asyncio.all_tasks() if t is not current and not t.done()}
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=timeout)
    if late:
        log.warning(
            "cancelling %d task(s) still running after %.0fs: %s",
            len(late),
            timeout,
            ", ".join(sorted(_describe(t) for t in late)),
        )
        for task in late:
            task.cancel()
        await asyncio.wait(late, timeout=2.0)


def _describe(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or type(coro).__name__
    return f"{task.get_name()} ({name})"


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop``; a second one exits at once with status 130."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def handle(sig: signal.Signals) -> None:
        if stop.is_set():
            print("numbershop: stopping now without waiting", file=sys.stderr, flush=True)
            os._exit(130)
        log.info("%s received: stopping cleanly (again to force)", sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handle, sig)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
