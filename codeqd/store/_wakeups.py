"""WakeHub: the store's pub/sub wake-ups turned into trio events for long-polls.

Scripts publish ``N:tenant|command`` on the wake channel when N tasks of a
queue become claimable, and ``tenant|id`` on the done channel when a task
becomes terminal. One listener per process feeds them to waiting requests:
a claim wake-up wakes at most N claim waiters of that queue (oldest first),
so one new task does not stampede a thousand idle long-polls; a done wake-up
wakes every waiter of that task. Wake-ups are hints: a waiter re-checks the
store, and waits at most ``poll_fallback`` between checks, so a lost message
costs latency, never a task.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
import trio

from codeqd import metrics

log = structlog.get_logger("codeqd.wakeups")


class Waiter:
    __slots__ = ("event", "keys", "seq")

    def __init__(self, seq: int, keys: tuple[str, ...]) -> None:
        self.seq = seq
        self.keys = keys
        self.event = trio.Event()


class WakeHub:
    def __init__(self) -> None:
        self._claim: dict[str, dict[Waiter, None]] = {}
        self._done: dict[str, dict[Waiter, None]] = {}
        self._seq = itertools.count()
        self.closed = False
        self.connected = trio.Event()

    @property
    def waiting(self) -> int:
        return len({w for ws in self._claim.values() for w in ws} | {
            w for ws in self._done.values() for w in ws})

    # ------------------------------------------------------------ registration

    @contextmanager
    def _register(self, table: dict[str, dict[Waiter, None]], keys: Iterable[str]) -> Iterator[Waiter]:
        waiter = Waiter(next(self._seq), tuple(keys))
        if self.closed:
            waiter.event.set()
        for key in waiter.keys:
            table.setdefault(key, {})[waiter] = None
        metrics.LONG_POLL_WAITERS.inc()
        try:
            yield waiter
        finally:
            metrics.LONG_POLL_WAITERS.dec()
            for key in waiter.keys:
                bucket = table.get(key)
                if bucket is not None:
                    bucket.pop(waiter, None)
                    if not bucket:
                        del table[key]

    def claim_waiter(self, ten: str, commands: Iterable[str] | None) -> Any:
        """Register for wake-ups of the tenant's commands (None: any command)."""
        keys = [f"{ten}|*"] if commands is None else [f"{ten}|{c}" for c in commands]
        return self._register(self._claim, keys)

    def done_waiter(self, ten: str, task_id: str) -> Any:
        return self._register(self._done, [f"{ten}|{task_id}"])

    # ------------------------------------------------------------ delivery

    def wake_queue(self, queue: str, count: int) -> None:
        ten = queue.split("|", 1)[0]
        candidates = {**self._claim.get(queue, {}), **self._claim.get(f"{ten}|*", {})}
        pending = sorted((w for w in candidates if not w.event.is_set()), key=lambda w: w.seq)
        for waiter in pending[:count]:
            waiter.event.set()

    def wake_done(self, key: str) -> None:
        for waiter in self._done.get(key, {}):
            waiter.event.set()

    def wake_all(self) -> None:
        for table in (self._claim, self._done):
            for bucket in table.values():
                for waiter in bucket:
                    waiter.event.set()

    def close(self) -> None:
        """Shutdown: every current and future waiter returns at once."""
        self.closed = True
        self.wake_all()

    def _dispatch(self, channel: str, data: str, wake_channel: str) -> None:
        if channel == wake_channel:
            count, _, queue = data.partition(":")
            self.wake_queue(queue, int(count) if count.isdigit() else 1)
        else:
            self.wake_done(data)

    async def run(
        self, store: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen until cancelled, reconnecting with backoff; waiters are woken after a
        reconnect because messages may have been missed while away."""
        wake, done = store.keys.wake_channel, store.keys.done_channel
        started = False
        delay = 0.1
        while True:
            try:
                async with store.client.pubsub(channels=[wake, done]) as ps:
                    if not started:
                        task_status.started()
                        started = True
                    self.connected.set()
                    self.wake_all()
                    delay = 0.1
                    async for message in ps:
                        if message and message.get("type") == "message":
                            self._dispatch(message["channel"], message["data"], wake)
            except trio.Cancelled:
                raise
            except Exception as e:  # the store went away: retry; a hint channel must not die
                self.connected = trio.Event()
                log.warning("wakeups.disconnected", error=f"{type(e).__name__}: {e}",
                            retry_in=delay)
                if not started:
                    task_status.started()
                    started = True
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
