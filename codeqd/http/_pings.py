"""The pings of a process's worker streams, run by one task: a heap of when each stream
is next due (to be pinged, or to have answered its ping).

Why one task: a stream that pinged from a task of its own slept on two timers per ping
period (``ping_interval``, then ``ping_timeout``), and each timer's expiry is a trio
deadline, a cancelled scope and a task woken through its stack. With 1,000 idle
streams that was 50 such wake-ups a second, a large part of what an idle stream costs
(docs/performance.md, "Idle streams: pings served by one task"). Here a due stream
costs a heap step and a call; only the earliest due time is a timer.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any, Protocol

import structlog
import trio

log = structlog.get_logger("codeqd.streams")


class Pinged(Protocol):
    def ping_due(self, now: float) -> float | None:
        """Do what is due at ``now`` (trio's clock; send a ping, or check its answer)
        without blocking, and return when this is next due (None: never again)."""


class Pings:
    """The heap and the task (``run``) that serves it; ``add`` schedules a stream.

    Due times are rounded up to a multiple of ``grain`` seconds (of trio's clock), so
    the streams due within one such step are served in one pass: their pings go out in
    one scheduler pass, and their pongs come back together. Pinged one at a time, each
    ping round took five passes of trio's loop of its own (this task, the stream's
    writer; hypercorn's reader, Quart's message task and the stream's reader for the
    pong), and the passes, not the pings, were half of what an idle stream cost.
    """

    def __init__(self, grain: float = 1.0) -> None:
        self.grain = grain
        #: Entries [due, seq, target]; a removed entry's target is None until popped.
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._removed = 0
        self._earlier = trio.Event()  # an entry went in before the one slept on

    @classmethod
    def for_periods(cls, interval: float, timeout: float) -> Pings:
        """The grain for pings every ``interval`` answered within ``timeout``: a tenth
        of the shorter, at most a second (so a ping or its check is late by at most
        that)."""
        return cls(grain=min(1.0, min(interval, timeout) / 10))

    def round_up(self, t: float) -> float:
        """``t`` (trio's clock) rounded up to the grain: streams that time other things
        by it too (their registry record) wake in the same passes."""
        return math.ceil(t / self.grain) * self.grain

    def __len__(self) -> int:
        return len(self._heap) - self._removed

    def add(self, target: Pinged, due: float) -> Callable[[], None]:
        """Call ``target.ping_due`` at ``due`` (then when it says); returns what takes it
        out (idempotent; call it when the stream ends)."""
        self._compact()
        entry: list[Any] = [self.round_up(due), next(self._seq), target]
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._earlier.set()

        def remove() -> None:
            if entry[2] is not None:
                entry[2] = None
                self._removed += 1

        return remove

    def _compact(self) -> None:
        """Drop removed entries once they are most of the heap (streams that came and
        went between pings), so that churn cannot grow it. Never while serving."""
        if self._removed > 64 and 2 * self._removed > len(self._heap):
            self._heap = [e for e in self._heap if e[2] is not None]
            heapq.heapify(self._heap)
            self._removed = 0

    async def run(self) -> None:
        """Serve due entries until cancelled (with the ingress). Cancellation: nothing is
        left half done; each stream ends with its own task."""
        while True:
            if self._earlier.is_set():
                self._earlier = trio.Event()
            earlier = self._earlier
            with trio.move_on_at(self._heap[0][0] if self._heap else math.inf):
                await earlier.wait()
            self._serve_due(trio.current_time())
            self._compact()

    def _serve_due(self, now: float) -> None:
        """Call every entry due by ``now``, in due order, and put back those that say
        when they are next due; a removed entry is dropped unserved."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heap[0]
            target = entry[2]
            if target is None:
                heapq.heappop(heap)
                self._removed -= 1
                continue
            try:
                due = target.ping_due(now)
            except Exception:  # one stream's fault never stops the others' pings
                log.exception("streams.ping_failed")
                due = None
            if entry[2] is None:  # taken out by its own call (the stream finished)
                heapq.heappop(heap)
                self._removed -= 1
            elif due is None:
                entry[2] = None
                heapq.heappop(heap)
            else:
                entry[0] = self.round_up(max(due, now + 1e-3))
                heapq.heapreplace(heap, entry)
