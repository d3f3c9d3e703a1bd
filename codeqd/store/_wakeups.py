"""WakeHub: wake-up hints turned into trio events for long-polling requests.

The process's listener (``_hints.Wakeups``) feeds the hub's inbox: ``QueueWork``
when N tasks of a queue became claimable, ``TaskDone`` when a task became
terminal. A claim wake-up wakes at most N claim waiters of that queue (oldest
first), so one new task does not stampede a thousand idle long-polls, and tells
each woken waiter which shard to look at, so a woken claim costs one store
round trip, not one per shard; a done wake-up wakes every waiter of that task.
Wake-ups are hints: a waiter re-checks the store when woken. While the
subscription is up no message is lost (the store pushes each one on it), so a
waiter sleeps until its deadline; when the subscription drops every waiter is
woken, and until it is back waiters poll every ``poll_fallback``; the
reconnect wakes them all again. A lost message costs latency, never a task.

Parked requests (long-poll claims and result waits alike) are counted once, in
``parked``, against ``actors.ingress.max_waiters`` (429 beyond it), and hold no
store connection while they wait: their store look-ups go through ``checks``, a
limiter that keeps a herd of woken requests (3,000 long-polls after a reconnect)
from queueing more store calls than the pool can answer in time; a request that
cannot get a slot before its deadline ends its wait empty-handed (204), not 503.

Cost: registering, unregistering and ``waiting`` are O(1) per key; a wake-up
visits only the waiters it wakes (plus ones already woken but not yet gone).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import trio

from codeqd import metrics
from codeqd.domain.errors import RateLimited
from codeqd.store._hints import Inbox, Own, QueueWork, Resync, TaskDone
from codeqd.store._keys import escape_tenant

#: ``Waiter.shards`` after a wake-up that did not name a shard: look everywhere.
ANY_SHARD = None


class Waiter:
    __slots__ = ("event", "keys", "seq", "shards")

    def __init__(self, seq: int, keys: tuple[str, ...]) -> None:
        self.seq = seq
        self.keys = keys
        self.event = trio.Event()
        #: The shards the wake-ups named; ``None`` when any shard may have work.
        self.shards: set[int] | None = set()

    def wake(self, shard: int | None) -> None:
        if shard is None:
            self.shards = ANY_SHARD
        elif self.shards is not None:
            self.shards.add(shard)
        self.event.set()

    def shards_to_check(self) -> set[int] | None:
        """Where to look after the wait: the named shards, or ``None`` (every shard) when
        the wait ended without a shard-specific wake-up (timeout, reconnect, shutdown)."""
        if not self.event.is_set() or not self.shards:
            return None
        return self.shards


def _seq(w: Waiter) -> int:
    return w.seq


class WakeHub:
    def __init__(self, check_slots: int = 32) -> None:
        self._claim: dict[str, dict[Waiter, None]] = {}
        self._done: dict[str, dict[Waiter, None]] = {}
        self._seq = itertools.count()
        self._waiting = 0
        #: Store look-ups of parked requests at once (see the module docstring).
        self.checks = trio.CapacityLimiter(check_slots)
        self.closed = False
        self.connected = trio.Event()

    @classmethod
    def for_config(cls, config: Any) -> WakeHub:
        """Half the store pool for parked requests' look-ups; the rest stays free for
        requests that do not wait."""
        return cls(check_slots=max(1, config.store.max_connections // 2))

    @property
    def waiting(self) -> int:
        """Requests parked in the hub right now (claims and result waits)."""
        return self._waiting

    @property
    def registered(self) -> int:
        """Waiters registered for wake-ups right now: parked requests, and claims between
        their registration and their first look."""
        return len({w for table in (self._claim, self._done) for b in table.values() for w in b})

    @contextmanager
    def parked(self, limit: int, operation: str) -> Iterator[None]:
        """Count one long-polling request for as long as it waits; 429 (``RateLimited``)
        when ``limit`` requests are parked already, whatever they wait for."""
        if self._waiting >= limit:
            raise RateLimited(
                "too many long-polling requests are waiting "
                "(actors.ingress.max_waiters); retry later",
                retry_after=1,
                scope="ingress",
                operation=operation,
            )
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1

    @contextmanager
    def blocked(self) -> Iterator[None]:
        """A parked request between its looks, waiting for a wake-up: counted in
        ``codeq_long_poll_waiters`` (so the gauge says how many wait, not how many are
        looking at the store)."""
        metrics.add(metrics.LONG_POLL_WAITERS)
        try:
            yield
        finally:
            metrics.add(metrics.LONG_POLL_WAITERS, amount=-1)

    @asynccontextmanager
    async def check(self, deadline: float) -> AsyncIterator[bool]:
        """A slot for one store look-up of a parked request: yields True once it has
        one, False when ``deadline`` came first (the request then ends its wait)."""
        got, borrower = False, object()
        with trio.move_on_at(deadline):
            await self.checks.acquire_on_behalf_of(borrower)
            got = True
        try:
            yield got
        finally:
            if got:
                self.checks.release_on_behalf_of(borrower)

    # ------------------------------------------------------------ registration

    @contextmanager
    def _register(
        self, table: dict[str, dict[Waiter, None]], keys: Iterable[str]
    ) -> Iterator[Waiter]:
        waiter = Waiter(next(self._seq), tuple(keys))
        if self.closed:
            waiter.wake(None)
        # Buckets are dicts: insertion order is seq order, so the oldest waiter is first.
        for key in waiter.keys:
            table.setdefault(key, {})[waiter] = None
        try:
            yield waiter
        finally:
            for key in waiter.keys:
                bucket = table.get(key)
                if bucket is not None:
                    bucket.pop(waiter, None)
                    if not bucket:
                        del table[key]

    def claim_waiter(self, tenant: str, commands: Iterable[str] | None) -> Any:
        """Register for wake-ups of the tenant's commands (None: any command)."""
        ten = escape_tenant(tenant)
        keys = [f"{ten}|*"] if commands is None else [f"{ten}|{c}" for c in commands]
        return self._register(self._claim, keys)

    def done_waiter(self, tenant: str, task_id: str) -> Any:
        """Register for the wake-up of the task becoming terminal."""
        return self._register(self._done, [f"{escape_tenant(tenant)}|{task_id}"])

    # ------------------------------------------------------------ delivery

    def wake_queue(self, queue: str, count: int, shard: int | None = None) -> None:
        """Wake the ``count`` oldest idle claim waiters of ``queue`` (``tenant|command``),
        pointing them at ``shard``."""
        ten = queue.split("|", 1)[0]
        named, wildcard = self._claim.get(queue), self._claim.get(f"{ten}|*")
        if named and wildcard:
            candidates: Iterable[Waiter] = heapq.merge(named, wildcard, key=_seq)
        else:
            candidates = named or wildcard or ()
        for waiter in candidates:
            if count <= 0:
                break
            if not waiter.event.is_set():
                waiter.wake(shard)
                count -= 1

    def pass_on(self, waiter: Waiter) -> None:
        """A woken claim waiter ended without looking (its deadline came before a slot,
        or the waiter cap refused it): wake the next idle waiter of its queues instead,
        so that the wake-up, and the task it announced, are not lost with it. The oldest
        waiter is woken first and is also the nearest to its deadline."""
        for key in waiter.keys:
            for shard in waiter.shards or (None,):
                self.wake_queue(key, 1, shard)

    def wake_done(self, key: str) -> None:
        for waiter in self._done.get(key, {}):
            waiter.wake(None)

    def wait_until(self, deadline: float, poll_fallback: float) -> float:
        """When a waiter should look again without a wake-up: at ``deadline`` while the
        subscription is up (1,000 idle long-polls then cost nothing), else after
        ``poll_fallback``."""
        if self.connected.is_set():
            return deadline
        return min(deadline, trio.current_time() + poll_fallback)

    def wake_all(self) -> None:
        for table in (self._claim, self._done):
            for bucket in table.values():
                for waiter in bucket:
                    waiter.wake(None)

    def close(self) -> None:
        """Shutdown: every current and future waiter returns at once."""
        self.closed = True
        self.wake_all()

    async def run(self, inbox: Inbox) -> None:
        """Apply the hints of ``inbox`` (the process's wake-ups) until it is closed or
        this is cancelled; a ``Resync`` wakes every waiter to re-check the store."""
        async for hint in inbox:
            if isinstance(hint, QueueWork):
                self.wake_queue(f"{hint.tenant}|{hint.command}", hint.count, hint.shard)
            elif isinstance(hint, TaskDone):
                if self._done:  # anyone waiting for a result in this process
                    for ten, task_id in hint.tasks:
                        self.wake_done(f"{ten}|{task_id}")
            elif isinstance(hint, Resync):
                if hint.connected:
                    self.connected.set()
                elif self.connected.is_set():
                    self.connected = trio.Event()  # waiters poll until the reconnect
                self.wake_all()


#: The hints the hub takes.
HUB_HINTS = (QueueWork, TaskDone, Resync)
#: Of this process's own posts, the hub takes those made while the wake-up listener is
#: down: while it is up, pub/sub's copy is the one wake-up. With both, the copy of a
#: create came after the waiter its post woke had taken the task, and woke a second
#: idle waiter to look at the store for nothing: one fruitless claim per task.
HUB_OWN: Own = "offline"
