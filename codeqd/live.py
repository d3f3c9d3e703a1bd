"""What every actor shares: its live config section and the bounded-batch loop.

``Live`` holds an actor's config section: the supervisor's channel to the actor, a
one-slot inbox that keeps only the newest value (on SIGHUP the supervisor replaces
``value`` and sets ``changed``, so a sleeping actor picks the new tunables up at once
and a slow one never sees a stale backlog). ``run_loop`` is the loop of every
batch actor: promoter, reaper, janitor, metrics, dispatcher, notifier.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

import structlog
import trio

log = structlog.get_logger("codeqd.actors")

T = TypeVar("T")


class Live(Generic[T]):
    """An actor's config section as it is now."""

    def __init__(self, value: T) -> None:
        self.value = value
        self.changed = trio.Event()
        #: trio time of the actor's last sign of life; None for actors that don't beat.
        self.beat: float | None = None

    def alive(self) -> None:
        self.beat = trio.current_time()

    def update(self, value: T) -> None:
        self.value = value
        self.changed.set()
        self.changed = trio.Event()


class LoopSection(Protocol):
    """The config an actor's loop reads (``batch``, where an actor has one, too)."""

    @property
    def enabled(self) -> bool: ...
    @property
    def interval(self) -> float: ...


S = TypeVar("S", bound=LoopSection)


async def run_loop(
    name: str,
    live: Live[S],
    stopping: trio.Event,
    step: Callable[[S], Awaitable[int]],
    *,
    wake: Callable[[], Awaitable[Any]] | None = None,
    idle: Callable[[S], float] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``step(section)`` until ``stopping`` is set.

    ``step`` does at most ``section.batch`` items and returns how many it did;
    a full batch loops at once (there may be more), anything less sleeps
    ``idle(section)`` (default ``interval``). The sleep ends early on shutdown, a
    config change, or when ``wake()`` returns (an inbox hint: "the outbox has
    items"). A step that raises ``StoreUnavailable`` is logged and retried after the
    sleep; any other error propagates to the supervisor, which restarts the actor.
    Shutdown lets the current step finish: ``stopping`` is only checked between
    steps.
    """
    from codeqd.domain.errors import StoreUnavailable

    task_status.started()
    while not stopping.is_set():
        cfg = live.value
        if not cfg.enabled:
            live.beat = None
            await _sleep(stopping, live.changed, None, None)
            continue
        live.alive()
        try:
            done = await step(cfg)
        except StoreUnavailable as e:
            log.warning(f"{name}.store_unavailable", error=str(e))
            done = 0
        if done >= getattr(cfg, "batch", math.inf):
            await trio.lowlevel.checkpoint()
            continue
        pause = float(cfg.interval) if idle is None else idle(cfg)
        await _sleep(stopping, live.changed, wake, pause)


async def _sleep(
    stopping: trio.Event,
    changed: trio.Event,
    wake: Callable[[], Awaitable[Any]] | None,
    timeout: float | None,
) -> None:
    """Until ``stopping`` or ``changed`` is set, ``wake()`` returns, or ``timeout``."""
    with trio.move_on_after(float("inf") if timeout is None else max(0.0, timeout)):
        async with trio.open_nursery() as nursery:

            async def until(fn: Callable[[], Awaitable[Any]]) -> None:
                await fn()
                nursery.cancel_scope.cancel()

            nursery.start_soon(until, stopping.wait)
            nursery.start_soon(until, changed.wait)
            if wake is not None:
                nursery.start_soon(until, wake)
