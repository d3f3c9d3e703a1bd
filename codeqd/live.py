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

    sleep = _Sleep()
    try:
        async with trio.open_nursery() as watchers:
            watchers.start_soon(sleep.end_on, lambda: stopping)
            watchers.start_soon(sleep.end_on, lambda: live.changed)
            task_status.started()
            while not stopping.is_set():
                cfg = live.value
                if not cfg.enabled:
                    live.beat = None
                    await sleep(None, None)
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
                if cfg is live.value and not stopping.is_set():  # else no sleep: look again
                    await sleep(wake, pause)
            watchers.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The watchers only wait: what the nursery raised came from a step. The supervisor
        # (and a test) gets it as the step raised it.
        raise group.exceptions[0] from None


class _Sleep:
    """The loop's sleep between steps. Shutdown and a config change end it early; two
    tasks watch for them for the whole loop, so that a sleep is one cancel scope and
    not three new tasks (a hinted actor sleeps once per hint)."""

    def __init__(self) -> None:
        self._scope: trio.CancelScope | None = None

    async def __call__(
        self,
        wake: Callable[[], Awaitable[Any]] | None,
        timeout: float | None,
    ) -> None:
        """Until ``wake()`` returns, ``timeout`` passes, or a watched event is set (the
        caller looks at them before: an event set during the step ended no sleep)."""
        with trio.move_on_after(math.inf if timeout is None else max(0.0, timeout)) as scope:
            self._scope = scope
            try:
                await (trio.sleep_forever() if wake is None else wake())
            finally:
                self._scope = None

    async def end_on(self, event: Callable[[], trio.Event]) -> None:
        """End the sleep under way each time ``event()`` (looked up afresh: ``Live``
        replaces its ``changed`` once set) is set; return once it stays set."""
        while True:
            ev = event()
            await ev.wait()
            if self._scope is not None:
                self._scope.cancel()
            if event() is ev:  # set for good (shutdown)
                return
