"""``run_loop`` and ``Live`` on trio's virtual clock: when a batch actor steps, sleeps
and wakes. Every test runs on ``MockClock(autojump_threshold=0)``: no step does I/O,
so a sleep of 100 s passes at once and the step times are exact."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import pytest
import structlog
import trio
import trio.testing

from codeqd.domain.errors import StoreUnavailable
from codeqd.live import Live, run_loop


@dataclass(frozen=True)
class Section:
    enabled: bool = True
    interval: float = 5.0
    batch: int = 10


class Steps:
    """A step that does ``results[i]`` items on its i-th call, records when it ran,
    and sets ``stopping`` once the results run out."""

    def __init__(self, stopping: trio.Event, *results: int | Exception) -> None:
        self.stopping = stopping
        self.results = list(results)
        self.times: list[float] = []
        self.sections: list[Section] = []
        self.called = trio.Event()

    async def __call__(self, section: Section) -> int:
        self.times.append(trio.current_time())
        self.sections.append(section)
        self.called.set()
        self.called = trio.Event()
        result = self.results.pop(0)
        if not self.results:
            self.stopping.set()
        if isinstance(result, Exception):
            raise result
        return result


async def run(
    live: Live[Section],
    steps: Steps,
    *,
    wake: Callable[[], Awaitable[object]] | None = None,
    idle: Callable[[Section], float] | None = None,
) -> float:
    """Run the loop to its end; the virtual time it ended at."""
    with trio.fail_after(10_000):  # virtual seconds: only a loop that never ends trips it
        await run_loop("test", live, steps.stopping, steps, wake=wake, idle=idle)
    return trio.current_time()


def since(start: float, times: list[float]) -> list[float]:
    return [round(t - start, 6) for t in times]


async def test_a_short_batch_sleeps_the_interval_a_full_one_loops_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    steps = Steps(trio.Event(), 10, 10, 3, 10, 0, 0)
    t0 = trio.current_time()
    end = await run(Live(Section(interval=5.0, batch=10)), steps)
    assert since(t0, steps.times) == [0, 0, 0, 5, 5, 10]
    assert end - t0 == 10  # the last step set stopping: no sleep after it


async def test_a_section_without_batch_always_sleeps(
    autojump_clock: trio.testing.MockClock,
) -> None:
    @dataclass(frozen=True)
    class NoBatch:
        enabled: bool = True
        interval: float = 2.0

    steps = Steps(trio.Event(), 1000, 1000, 0)
    t0 = trio.current_time()
    await run_loop("test", Live(NoBatch()), steps.stopping, steps)  # type: ignore[arg-type]
    assert since(t0, steps.times) == [0, 2, 4]


async def test_idle_sets_the_pause_instead_of_the_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    steps = Steps(trio.Event(), 0, 0, 0)
    t0 = trio.current_time()
    await run(Live(Section(interval=5.0)), steps, idle=lambda s: s.interval / 10)
    assert since(t0, steps.times) == [0, 0.5, 1.0]


async def test_a_config_change_ends_the_sleep_and_the_next_step_reads_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    live = Live(Section(interval=100.0))
    steps = Steps(trio.Event(), 0, 0, 0)
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, live, steps)
        await trio.sleep(1)
        assert since(t0, steps.times) == [0]  # asleep for 100 s
        live.update(Section(interval=2.0))
    assert since(t0, steps.times) == [0, 1, 3]
    assert [s.interval for s in steps.sections] == [100.0, 2.0, 2.0]


async def test_wake_ends_the_sleep_early(autojump_clock: trio.testing.MockClock) -> None:
    send, receive = trio.open_memory_channel[None](10)
    steps = Steps(trio.Event(), 0, 0, 0)
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run(Live(Section(interval=100.0)), steps, wake=receive.receive))
        await trio.sleep(7)
        send.send_nowait(None)  # a hint: "there is work"
        await steps.called.wait()
        await trio.sleep(3)
        send.send_nowait(None)
    assert since(t0, steps.times) == [0, 7, 10]


async def test_a_wake_that_came_during_the_step_makes_the_next_sleep_short(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An inbox keeps a hint posted while the actor was busy: the loop steps again at
    once instead of sleeping past it."""
    send, receive = trio.open_memory_channel[None](10)
    stopping = trio.Event()
    times: list[float] = []

    async def step(section: Section) -> int:
        times.append(trio.current_time())
        if len(times) == 1:
            send.send_nowait(None)
        else:
            stopping.set()
        return 0

    t0 = trio.current_time()
    await run_loop("test", Live(Section(interval=100.0)), stopping, step, wake=receive.receive)
    assert since(t0, times) == [0, 0]


async def test_a_disabled_section_never_steps_until_enabled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    live = Live(Section(enabled=False, interval=1.0))
    live.beat = 0.0
    steps = Steps(trio.Event(), 0, 0)
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, live, steps)
        await trio.sleep(1000)
        assert steps.times == []
        assert live.beat is None  # a disabled actor does not beat: never stale
        live.update(replace(live.value, enabled=True))
        await steps.called.wait()
        assert live.beat == t0 + 1000
    assert since(t0, steps.times) == [1000, 1001]


async def test_store_unavailable_is_logged_and_retried_after_the_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A full batch would loop at once; a failed step counts as none done.
    steps = Steps(trio.Event(), StoreUnavailable("down"), StoreUnavailable("still down"), 10, 0)
    t0 = trio.current_time()
    with structlog.testing.capture_logs() as logs:
        await run(Live(Section(interval=5.0, batch=10)), steps)
    assert since(t0, steps.times) == [0, 5, 10, 10]
    warnings = [e for e in logs if e["event"] == "test.store_unavailable"]
    assert [(e["log_level"], e["error"]) for e in warnings] == [
        ("warning", "down"),
        ("warning", "still down"),
    ]


async def test_any_other_error_propagates_to_the_supervisor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    steps = Steps(trio.Event(), 0, RuntimeError("bug"), 0)
    t0 = trio.current_time()
    with pytest.raises(RuntimeError, match="bug"):
        await run(Live(Section(interval=5.0)), steps)
    assert since(t0, steps.times) == [0, 5]


async def test_shutdown_ends_the_sleep_but_never_a_step(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stopping = trio.Event()
    in_step = trio.Event()
    finished: list[float] = []

    async def slow_step(section: Section) -> int:
        in_step.set()
        await trio.sleep(30)  # a long step: stopping is set while it runs
        finished.append(trio.current_time())
        return 0

    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_loop, "test", Live(Section(interval=100.0)), stopping, slow_step)
        await in_step.wait()
        await trio.sleep(1)
        stopping.set()
    # The step ran to its end, and the loop returned right after it without sleeping.
    assert since(t0, finished) == [30]
    assert trio.current_time() - t0 == 30

    # Asleep: the stop ends the 100 s sleep at once.
    stopping = trio.Event()
    steps = Steps(stopping, 0, 0)
    t1 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, Live(Section(interval=100.0)), steps)
        await trio.sleep(4)
        stopping.set()
    assert since(t1, steps.times) == [0]
    assert trio.current_time() - t1 == 4


async def test_a_live_update_wakes_every_waiter_and_rearms(
    autojump_clock: trio.testing.MockClock,
) -> None:
    live = Live(Section())
    first = live.changed
    live.update(Section(interval=1.0))
    assert first.is_set()
    assert not live.changed.is_set()  # a fresh event for the next change
    assert live.value == Section(interval=1.0)
    live.alive()
    assert live.beat == trio.current_time()
