"""What every actor shares: its live config section and the bounded-batch loop.

``Live`` holds an actor's config section; the supervisor replaces ``value`` on
SIGHUP and sets ``changed`` so a sleeping actor picks the new tunables up at once.
``run_loop`` is the loop of the batch actors (promoter, reaper, janitor...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

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
    @property
    def enabled(self) -> bool: ...
    @property
    def interval(self) -> float: ...
    @property
    def batch(self) -> int: ...


S = TypeVar("S", bound=LoopSection)


async def run_loop(
    name: str,
    live: Live[S],
    stopping: trio.Event,
    step: Callable[[S], Awaitable[int]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``step(section)`` until ``stopping`` is set.

    ``step`` does at most ``section.batch`` items and returns how many it did;
    a full batch loops at once (there may be more), anything less sleeps
    ``interval``. The sleep ends early on shutdown or a config change. A step
    that raises ``StoreUnavailable`` is logged and retried after ``interval``;
    any other error propagates to the supervisor, which restarts the actor.
    Shutdown lets the current step finish: ``stopping`` is only checked
    between steps.
    """
    from codeqd.domain.errors import StoreUnavailable

    task_status.started()
    while not stopping.is_set():
        cfg = live.value
        if not cfg.enabled:
            live.beat = None
            await _wait_any(stopping, live.changed, None)
            continue
        live.alive()
        try:
            done = await step(cfg)
        except StoreUnavailable as e:
            log.warning(f"{name}.store_unavailable", error=str(e))
            done = 0
        if done >= cfg.batch:
            await trio.lowlevel.checkpoint()
            continue
        await _wait_any(stopping, live.changed, float(cfg.interval))


async def _wait_any(a: trio.Event, b: trio.Event, timeout: float | None) -> None:
    with trio.move_on_after(float("inf") if timeout is None else timeout):
        async with trio.open_nursery() as nursery:

            async def wait(ev: trio.Event) -> None:
                await ev.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait, a)
            nursery.start_soon(wait, b)
