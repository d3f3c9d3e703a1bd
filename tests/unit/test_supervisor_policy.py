"""The supervisor's restart policy on trio's virtual clock: the backoff between
restarts, the give-up when restarts exceed ``max_restarts`` within
``window_seconds``, and no give-up when they spread over more than the window.

Each actor is run under the supervisor's one-for-one loop (``_supervise``) with a
context whose store points at a closed port and is never used: nothing opens a
socket, so ``MockClock(autojump_threshold=0)`` skips every backoff at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from itertools import pairwise
from typing import Any

import pytest
import structlog
import trio
import trio.testing

from codeqd.auth import Authenticator
from codeqd.config import (
    ActorsConfig,
    Config,
    Duration,
    JanitorConfig,
    LoopActorConfig,
    MetricsConfig,
    PromoterConfig,
    ReaperConfig,
    SupervisorConfig,
)
from codeqd.context import Context
from codeqd.live import Live
from codeqd.store import WakeHub, connect
from codeqd.supervisor import SERVICES, ActorSpec, GaveUp, Supervisor

Run = Callable[..., Awaitable[Any]]


def policy(
    *,
    max_restarts: int = 5,
    window: float = 60,
    backoff_base: float = 0.5,
    backoff_max: float = 10,
    actors: ActorsConfig | None = None,
) -> Config:
    return Config(
        actors=actors or ActorsConfig(),
        supervisor=SupervisorConfig(
            max_restarts=max_restarts,
            window_seconds=Duration(window),
            backoff_base=Duration(backoff_base),
            backoff_max=Duration(backoff_max),
        ),
    )


@asynccontextmanager
async def supervisor(
    config: Config, *actors: tuple[str, Run] | ActorSpec
) -> AsyncIterator[Supervisor]:
    specs = [
        a if isinstance(a, ActorSpec) else ActorSpec(a[0], a[1], lambda c: LoopActorConfig())
        for a in actors
    ]
    sup = Supervisor(config, services=specs)
    async with connect(config, "redis://127.0.0.1:1") as store:  # never connected
        sup.ctx = Context(
            config=config,
            store=store,
            hub=WakeHub.for_config(config),
            auth=Authenticator(config),
            lives=sup.lives,
            shutting_down=sup.shutting_down,
            forced=sup.forced,
        )
        yield sup


def spec_of(sup: Supervisor, name: str) -> ActorSpec:
    return next(s for s in sup.services if s.name == name)


class Script:
    """An actor that fails ``fail_before_start`` times before it starts, then starts
    and fails ``fail_after_start`` times ``runs_for`` seconds after starting, then
    starts and stays up until shutdown. Records when each run began."""

    def __init__(
        self, *, fail_before_start: int = 0, fail_after_start: int = 0, runs_for: float = 0
    ) -> None:
        self.before = fail_before_start
        self.after = fail_after_start
        self.runs_for = runs_for
        self.starts: list[float] = []
        #: Set when the actor starts for good (its last run, up until shutdown).
        self.up = trio.Event()

    async def __call__(self, ctx: Context, live: Live[Any], *, task_status: Any) -> None:
        self.starts.append(trio.current_time())
        if self.before:
            self.before -= 1
            raise RuntimeError("failed before starting")
        task_status.started(len(self.starts))
        if self.after:
            self.after -= 1
            await trio.sleep(self.runs_for)
            raise RuntimeError("failed while running")
        self.up.set()
        await ctx.shutting_down.wait()


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in pairwise(times)]


async def test_restarts_back_off_exponentially_up_to_the_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    actor = Script(fail_before_start=6)
    config = policy(max_restarts=100, window=1000, backoff_base=1, backoff_max=10)
    with structlog.testing.capture_logs() as logs:
        async with supervisor(config, ("flaky", actor)) as sup, trio.open_nursery() as nursery:
            started = await nursery.start(sup._supervise, spec_of(sup, "flaky"))
            sup.shutting_down.set()
    assert started == 7  # the first started value, from the seventh run
    assert gaps(actor.starts) == [1, 2, 4, 8, 10, 10]
    crashed = [e["restart_in"] for e in logs if e["event"] == "actor.crashed"]
    assert crashed == [1, 2, 4, 8, 10, 10]
    assert sup.restarts == {"flaky": 6}


async def test_an_actor_that_started_restarts_after_the_base_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The backoff counts failures since the actor last started: a batch actor
    starts at once, so one that fails in a step is back after ``backoff_base``."""
    actor = Script(fail_before_start=3, fail_after_start=2, runs_for=5)
    config = policy(max_restarts=100, window=1000, backoff_base=1, backoff_max=10)
    async with supervisor(config, ("flaky", actor)) as sup, trio.open_nursery() as nursery:
        await nursery.start(sup._supervise, spec_of(sup, "flaky"))
        await actor.up.wait()
        sup.shutting_down.set()
    # 3 failures before starting (1, 2, 4), then runs of 5 s each followed by 1 s.
    assert gaps(actor.starts) == [1, 2, 4, 5 + 1, 5 + 1]
    assert sup.restarts == {"flaky": 5}


async def test_more_restarts_than_max_within_the_window_give_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    actor = Script(fail_before_start=10**6)
    config = policy(max_restarts=3, window=60, backoff_base=1, backoff_max=1)
    t0 = trio.current_time()
    async with supervisor(config, ("broken", actor)) as sup:
        with pytest.raises(GaveUp, match="4 actor restarts within 60s"):
            await sup._supervise(spec_of(sup, "broken"))
    # The first run and 3 restarts; the 4th failure within 60 s is one too many.
    assert [t - t0 for t in actor.starts] == [0, 1, 2, 3]
    assert trio.current_time() - t0 == 3  # gave up at once, without a last backoff


async def test_restarts_spread_over_more_than_the_window_never_give_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two restarts allowed per 60 s and one every 40 s: at most two are ever within
    a window, however long it goes on. (With the window on wall time and the
    backoffs on trio's clock the third failure would give up.) A day of them is
    2161 failures in a row: the exponential backoff stays at its cap."""
    actor = Script(fail_before_start=10**6)
    config = policy(max_restarts=2, window=60, backoff_base=40, backoff_max=40)
    async with supervisor(config, ("slow", actor)) as sup, trio.open_nursery() as nursery:
        nursery.start_soon(sup._supervise, spec_of(sup, "slow"))
        await trio.sleep(24 * 3600 + 20)  # the scenario: a day of failures, on virtual time
        assert sup.restarts == {"slow": 24 * 3600 // 40 + 1}
        nursery.cancel_scope.cancel()
    assert set(gaps(actor.starts)) == {40}


async def test_the_same_failures_closer_together_give_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The counterpart of the test above: one restart every 20 s puts three within 60 s."""
    actor = Script(fail_before_start=10**6)
    config = policy(max_restarts=2, window=60, backoff_base=20, backoff_max=20)
    t0 = trio.current_time()
    async with supervisor(config, ("slow", actor)) as sup:
        with pytest.raises(GaveUp, match="3 actor restarts within 60s"):
            await sup._supervise(spec_of(sup, "slow"))
    assert trio.current_time() - t0 == 40


async def test_one_for_one_and_the_window_counts_every_actor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failing actor is restarted alone (the steady one keeps its first run), and the
    restart intensity is the daemon's: two actors failing twice each exceed 3."""
    steady = Script()
    a = Script(fail_after_start=10**6, runs_for=5)
    b = Script(fail_after_start=10**6, runs_for=7)
    config = policy(max_restarts=3, window=60, backoff_base=1, backoff_max=1)
    t0 = trio.current_time()
    async with supervisor(config, ("steady", steady), ("a", a), ("b", b)) as sup:
        with pytest.RaisesGroup(
            pytest.RaisesExc(GaveUp, match=r"4 actor restarts within 60s \(last: b:")
        ):
            async with trio.open_nursery() as nursery:
                for spec in sup.services:
                    await nursery.start(sup._supervise, spec)
    # a fails at 5 and 11, b at 7 and 15: the 4th failure in 60 s (b's) gives up.
    assert [t - t0 for t in a.starts] == [0, 6, 12]
    assert [t - t0 for t in b.starts] == [0, 8]
    assert trio.current_time() - t0 == 15
    assert steady.starts == [t0]
    assert sup.restarts == {"a": 2, "b": 2}


async def test_a_failure_during_shutdown_is_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    actor = Script(fail_after_start=1, runs_for=5)
    config = policy(max_restarts=3, window=60, backoff_base=1, backoff_max=1)
    async with supervisor(config, ("stopping", actor)) as sup, trio.open_nursery() as nursery:
        await nursery.start(sup._supervise, spec_of(sup, "stopping"))
        sup.shutting_down.set()  # the actor fails 5 s later, in its drain
    assert len(actor.starts) == 1
    assert sup.restarts == {}


async def test_real_batch_actors_disabled_wait_without_a_store_and_stop_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The daemon's own promoter, reaper, janitor and metrics actors with their
    sections disabled: started, they never step (the store, at a closed port, is
    never called), never beat, and a stop ends their wait at once."""
    off = ActorsConfig(
        promoter=PromoterConfig(enabled=False),
        reaper=ReaperConfig(enabled=False),
        janitor=JanitorConfig(enabled=False),
        metrics=MetricsConfig(enabled=False),
    )
    batch = [s for s in SERVICES if s.name in ("promoter", "reaper", "janitor", "metrics")]
    assert len(batch) == 4
    async with supervisor(policy(actors=off), *batch) as sup, trio.open_nursery() as nursery:
        for spec in batch:
            await nursery.start(sup._supervise, spec)
        await trio.sleep(3600)  # the scenario: an hour disabled, on virtual time
        assert [sup.lives[s.name].beat for s in batch] == [None] * 4
        stopped_at = trio.current_time()
        sup.shutting_down.set()
    assert trio.current_time() == stopped_at
    assert sup.restarts == {}
