"""Wake-up hints: one pub/sub listener per process, fanned out to the actors' inboxes.

Scripts publish on the store's channels when tasks become claimable (``N:ten|cmd``
on the shard's wake channel), become terminal (``ten|id`` lines on the done
channel) or when a tenant's subscriptions change (the tenant on the subscriptions
channel). ``Wakeups.run`` is the one subscriber of a process: it decodes each
message into a typed hint and offers it to every inbox that takes that kind — the
long-poll hub, the dispatcher, the notifier. Producers in the same process (the
store's own transitions: create, promote, requeue, replay, resume, result, cancel)
``post`` the same hints straight to the inboxes; they still publish for other
processes and other daemons on the store, and the copy comes back to this process too.
Each inbox says which of the process's own posts it takes (``Own``): the dispatcher
takes them all (a second look at the outbox is cheap); the notifier, which counts
transitions ("was the queue empty before these N?"), takes only the pub/sub copy,
which arrives exactly once per transition; the long-poll hub takes the copy while the
listener is up and its own posts only while it is down (``HUB_OWN``).

Every inbox is bounded and never blocks the listener: a hint that finds it full is
dropped and counted (``codeq_actor_inbox_dropped_total``), and the inbox remembers
it overflowed, so its reader re-checks everything as after a reconnect. Hints are
never the only copy of anything: the store is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import coredis
import structlog
import trio

from codeqd import metrics
from codeqd.store._conn import cluster_nodes
from codeqd.store._keys import Keys
from codeqd.store._subscriber import Endpoint, subscribe

log = structlog.get_logger("codeqd.wakeups")


@dataclass(frozen=True, slots=True)
class QueueWork:
    """``count`` tasks of a queue became claimable (on ``shard``; None: any shard).
    ``tenant`` is the store's key for the tenant: opaque outside the store."""

    tenant: str
    command: str
    count: int
    shard: int | None


@dataclass(frozen=True, slots=True)
class TaskDone:
    """Tasks became terminal in one step (a script call; one pub/sub message):
    ``tasks`` are (tenant, task id) pairs; ``callback``: at least one of them put its
    result callback in the outbox. One hint per step, not per task: a batch of results
    is one offer to each inbox."""

    tasks: tuple[tuple[str, str], ...]
    callback: bool = False


@dataclass(frozen=True, slots=True)
class SubscriptionsChanged:
    tenant: str


@dataclass(frozen=True, slots=True)
class Resync:
    """Anything may have been missed (the subscription (re)connected, or this inbox
    overflowed): re-check the store. ``connected`` says whether the subscription is
    up now (while it is down, waiters poll)."""

    connected: bool


Hint = QueueWork | TaskDone | SubscriptionsChanged | Resync

#: Which of this process's own posts an inbox takes, besides pub/sub's copies (which
#: bring every transition, this process's included): "all" at once (the copy comes
#: again later), "none" (the copies only: exactly one per transition), or "offline":
#: only while the listener is down, when no copy comes (while it is up, the copy is
#: the one hint).
Own = Literal["all", "none", "offline"]


class Inbox:
    """One actor's bounded inbox of hints (a trio memory channel).

    ``offer`` never blocks: a full inbox drops the hint (counted) and the next
    ``get`` returns a ``Resync`` first. ``get`` waits for the next hint; closing the
    inbox ends iteration once what was sent is read.
    """

    def __init__(
        self,
        actor: str,
        kinds: tuple[type, ...],
        size: int,
        *,
        own: Own = "all",
        accept: Callable[[Hint], bool] | None = None,
    ) -> None:
        self.actor = actor
        self.kinds = kinds
        #: Which of the hints this process posts itself it takes (see ``Own``).
        self.own = own
        #: Whether the actor wants a hint of its kinds at all (see ``Wakeups.inbox``).
        self.accept = accept
        self._send, self._receive = trio.open_memory_channel[Hint](size)
        self._overflowed = False
        self._dropped = metrics.INBOX_DROPPED.labels(actor)
        metrics.track_depth(actor, self)
        self.connected = False

    def offer(self, hint: Hint) -> bool:
        if not isinstance(hint, self.kinds):
            return False
        if self.accept is not None and not self.accept(hint):
            return False
        try:
            self._send.send_nowait(hint)
        except trio.WouldBlock:
            self._overflowed = True
            self._dropped.inc()
            return False
        except trio.ClosedResourceError:
            return False
        return True

    async def get(self) -> Hint:
        """The next hint (a ``Resync`` first when hints were dropped); raises
        ``trio.EndOfChannel`` once closed and drained. Cancellation: nothing is lost
        (a hint is only taken when this returns)."""
        if self._overflowed:
            self._overflowed = False
            return Resync(self.connected)
        return await self._receive.receive()

    def drain(self) -> list[Hint]:
        """Every hint waiting now, without blocking (a coalesced wake-up)."""
        out: list[Hint] = []
        if self._overflowed:
            self._overflowed = False
            out.append(Resync(self.connected))
        while True:
            try:
                out.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        return out

    def pending(self) -> int:
        return int(self._receive.statistics().current_buffer_used)

    def close(self) -> None:
        self._send.close()

    def __aiter__(self) -> AsyncIterator[Hint]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Hint]:
        while True:
            try:
                yield await self.get()
            except trio.EndOfChannel:
                return


class Wakeups:
    """The process's wake-up listener and the fan-out to inboxes (see the module)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.inboxes: list[Inbox] = []
        self.connected = False
        self.running = False
        keys: Keys = store.keys
        self._done_channel = keys.done_channel
        self._subs_channel = keys.subs_channel
        self._wake: dict[str, int | None] = {keys.wake_channel: None}
        self._wake.update({k.wake: s for s, k in enumerate(keys.all())})

    def inbox(
        self,
        actor: str,
        kinds: tuple[type, ...],
        size: int = 1024,
        *,
        own: Own = "all",
        accept: Callable[[Hint], bool] | None = None,
    ) -> Inbox:
        """A new inbox for ``actor`` that takes hints of ``kinds`` (the pub/sub copies,
        and of this process's own posts those ``own`` says); it starts with a ``Resync``
        telling whether the listener is connected now. ``accept``, when given, is asked
        about each hint of those kinds as it is offered (in order, without blocking):
        a hint it refuses never wakes the actor. A task done without a result callback
        is nothing to the dispatcher, a queue's work nothing to the notifier while the
        tenant has no subscription: a wake-up each saved per store step."""
        box = Inbox(actor, kinds, size, own=own, accept=accept)
        box.connected = self.connected
        self.inboxes.append(box)
        box.offer(Resync(self.connected))
        return box

    def remove(self, box: Inbox) -> None:
        box.close()
        if box in self.inboxes:
            self.inboxes.remove(box)

    def post(self, hint: Hint, *, local: bool = True) -> None:
        """Offer ``hint`` to every inbox that takes its kind (never blocks); ``local``:
        posted by this process's own transitions rather than received by pub/sub."""
        if isinstance(hint, Resync):
            self.connected = hint.connected
        for box in self.inboxes:
            if isinstance(hint, Resync):
                box.connected = hint.connected
            if not local or box.own == "all" or (box.own == "offline" and not self.connected):
                box.offer(hint)

    def decode(self, channel: str, data: str) -> list[Hint]:
        """The hints one pub/sub message carries."""
        if channel == self._done_channel:
            tasks: list[tuple[str, str]] = []
            callback = False
            for line in data.split("\n"):  # "tenant|id", "tenant|id|cb": callback queued
                ten, _, rest = line.partition("|")
                task_id, _, flag = rest.partition("|")
                tasks.append((ten, task_id))
                callback = callback or flag == "cb"
            return [TaskDone(tuple(tasks), callback)]
        if channel == self._subs_channel:
            return [SubscriptionsChanged(data)]
        count, _, queue = data.partition(":")
        ten, _, cmd = queue.partition("|")
        return [QueueWork(ten, cmd, int(count) if count.isdigit() else 1, self._wake.get(channel))]

    def channels(self) -> list[str]:
        return [*self._wake, self._done_channel, self._subs_channel]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled, reconnecting with backoff; every inbox gets a
        ``Resync`` on each (re)connect and disconnect. Cancellation: stops listening;
        the inboxes stay open (their owners close them)."""
        self.running = True

        def on_message(channel: str, data: str) -> None:
            for hint in self.decode(channel, data):
                self.post(hint, local=False)

        try:
            await listen(
                self.store,
                self.channels(),
                on_message,
                lambda: self.post(Resync(True), local=False),
                lambda: self.post(Resync(False), local=False),
                event="wakeups.disconnected",
                task_status=task_status,
            )
        finally:
            self.running = False
            self.connected = False


async def listen(
    store: Any,
    channels: list[str],
    on_message: Any,
    on_connect: Any,
    on_disconnect: Any,
    *,
    event: str,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Feed pub/sub messages to ``on_message(channel, data)`` until cancelled.

    Reconnects with backoff (logging ``event``); ``on_connect`` runs after every
    (re)connect, since messages may have been missed while away, and ``on_disconnect``
    when the subscription drops. Works with a single node (Redis or KVRocks) and
    with a cluster (see ``_subscription``).
    """
    started = False
    delay = 0.1
    while True:
        try:
            async with _subscription(store, channels) as messages:
                if not started:
                    task_status.started()
                    started = True
                on_connect()
                delay = 0.1
                async for channel, data in messages:
                    on_message(channel, data)
        except trio.Cancelled:
            raise
        except Exception as e:  # the store went away: retry; a hint channel must not die
            on_disconnect()
            log.warning(event, error=f"{type(e).__name__}: {e}", retry_in=delay)
            if not started:
                task_status.started()
                started = True
            await trio.sleep(delay)
            delay = min(delay * 2, 5.0)


@asynccontextmanager
async def _subscription(
    store: Any, channels: list[str]
) -> AsyncIterator[AsyncIterator[tuple[str, str]]]:
    """``(channel, data)`` of every message on ``channels``.

    A single node: our own subscriber connection (``_subscriber``: RESP2 arrays, so
    KVRocks' ``*3`` messages are read as well as Redis'). A Redis Cluster: coredis'
    ``ClusterPubSub`` on one node (the cluster bus delivers a ``PUBLISH`` from any
    node to subscribers on every node). A KVRocks cluster has no cluster bus: a
    ``PUBLISH`` reaches only the node it ran on, so one subscriber per primary
    (each message arrives once: a script publishes on the node that owns its
    shard). Primaries added later are subscribed at the next reconnect."""
    timeout = float(store.config.store.connect_timeout)
    ping = max(float(store.config.store.command_timeout), 1.0)
    if not isinstance(store.client, coredis.RedisCluster):
        async with subscribe(
            Endpoint.from_url(store.url), channels, connect_timeout=timeout, ping_interval=ping
        ) as sub:
            yield sub.messages()
        return
    if store.kvrocks is None:
        await store.identify()
    if not store.kvrocks:
        async with store.client.pubsub(channels=list(channels)) as ps:
            yield _coredis_messages(ps)
        return
    _, username, password = cluster_nodes(store.url)
    primaries = store.client.connection_pool.cluster_layout.primaries
    send, receive = trio.open_memory_channel[tuple[str, str]](1024)

    async def pump(node: Any, task_status: trio.TaskStatus[None]) -> None:
        endpoint = Endpoint(node.host, node.port, None, username, password)
        async with subscribe(
            endpoint, channels, connect_timeout=timeout, ping_interval=ping
        ) as sub:
            task_status.started()
            async for message in sub.messages():
                await send.send(message)
        raise ConnectionError(f"subscription to {node.host}:{node.port} ended")

    async with trio.open_nursery() as nursery:
        for node in primaries:
            await nursery.start(pump, node)
        yield _channel_messages(receive)
        nursery.cancel_scope.cancel()


async def _channel_messages(
    receive: trio.MemoryReceiveChannel[tuple[str, str]],
) -> AsyncIterator[tuple[str, str]]:
    async for message in receive:
        yield message


async def _coredis_messages(ps: Any) -> AsyncIterator[tuple[str, str]]:
    async for message in ps:
        if message and message.get("type") == "message":
            yield message["channel"], message["data"]
