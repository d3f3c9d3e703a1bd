"""``Pings``: one task serves every stream's ping periods in due order (autojump clock)."""

from __future__ import annotations

import trio
import trio.testing
from structlog.testing import capture_logs

from codeqd.http._pings import Pings


class Target:
    """Due every ``period`` seconds, ``times`` times; records when it was served."""

    def __init__(self, name: str, period: float, times: int, log: list[tuple[str, float]]):
        self.name, self.period, self.times, self.log = name, period, times, log

    def ping_due(self, now: float) -> float | None:
        self.log.append((self.name, now))
        self.times -= 1
        return now + self.period if self.times > 0 else None


Log = list[tuple[str, float]]


def running(nursery: trio.Nursery, grain: float = 1.0) -> tuple[Pings, Log, float]:
    """A ``Pings`` with its task started, a log for its targets, and the time now."""
    pings = Pings(grain=grain)
    nursery.start_soon(pings.run)
    return pings, [], trio.current_time()


async def test_targets_are_served_when_due_and_again_when_they_say(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    pings, log, t0 = running(nursery)
    pings.add(Target("a", 3, 3, log), t0 + 2)
    pings.add(Target("b", 4, 2, log), t0 + 1)
    await trio.sleep(20)
    assert [(name, round(t - t0)) for name, t in log] == [
        ("b", 1),
        ("a", 2),
        ("a", 5),  # a tie: the one added first
        ("b", 5),
        ("a", 8),
    ]
    assert len(pings) == 0  # each ended by returning None


async def test_an_earlier_target_wakes_the_task_sleeping_on_a_later_one(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    pings, log, t0 = running(nursery)
    pings.add(Target("late", 1, 1, log), t0 + 100)
    await trio.sleep(1)  # the task now sleeps until t0 + 100
    pings.add(Target("soon", 1, 1, log), t0 + 2)
    await trio.sleep(5)
    assert [(name, round(t - t0)) for name, t in log] == [("soon", 2)]


async def test_a_removed_target_is_never_served_and_churn_does_not_grow_the_heap(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    pings, log, t0 = running(nursery)
    kept = Target("kept", 10, 5, log)
    pings.add(kept, t0 + 10)
    for i in range(10_000):  # streams that open and close between two pings
        remove = pings.add(Target(f"gone{i}", 1, 1, log), t0 + 5)
        remove()
        remove()  # idempotent
    assert len(pings) == 1
    assert len(pings._heap) <= 2 * 64 + 2
    with capture_logs() as logs:
        await trio.sleep(15)
    assert log == [("kept", t0 + 10)]
    assert logs == []
    assert len(pings) == 1 and len(pings._heap) == 1


async def test_a_target_that_raises_ends_alone(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    class Broken:
        def ping_due(self, now: float) -> float | None:
            raise RuntimeError("a bug in one stream")

    pings, log, t0 = running(nursery)
    pings.add(Broken(), t0 + 1)
    pings.add(Target("ok", 1, 3, log), t0 + 1)
    await trio.sleep(10)
    assert [name for name, _ in log] == ["ok", "ok", "ok"]
    assert len(pings) == 0


async def test_a_target_that_removes_itself_while_served_is_dropped_once(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    pings, _, _ = running(nursery)
    calls = []

    class Finishing:
        remove = staticmethod(lambda: None)

        def ping_due(self, now: float) -> float | None:
            calls.append(now)
            self.remove()  # a stream that finishes (ping timeout) takes itself out
            return None

    f = Finishing()
    f.remove = pings.add(f, trio.current_time() + 1)  # type: ignore[method-assign]
    await trio.sleep(5)
    assert len(calls) == 1
    assert len(pings) == 0 and pings._heap == []


async def test_targets_due_within_one_grain_are_served_in_one_pass(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    pings, log, t0 = running(nursery, grain=1.0)
    for i, offset in enumerate((5.1, 5.5, 5.9)):
        pings.add(Target(f"s{i}", 10, 1, log), t0 + offset)
    await trio.sleep(8)
    served = {t for _, t in log}
    assert len(log) == 3 and len(served) == 1  # one pass for the three
    (when,) = served
    assert t0 + 5.9 <= when < t0 + 6.9  # late by less than a grain


def test_the_grain_is_a_tenth_of_the_shorter_period_at_most_a_second() -> None:
    assert Pings.for_periods(20, 20).grain == 1.0
    assert Pings.for_periods(0.1, 0.2).grain == 0.01
