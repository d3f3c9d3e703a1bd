"""The notifier: tells subscribed workers that a queue has work. Best effort.

Hints arrive in the notifier's inbox: ``QueueWork`` when N tasks of a queue became
claimable by enqueue, promotion, requeue, replay or resume (from this process at
once, from others through the store's pub/sub). Hints are summed per queue while a
round runs; a round (a ``run_loop`` step, woken by a hint) then looks at each queue
once: if the tenant has
matching subscriptions and the ready depth is at most the number of tasks just made
claimable (so the queue was empty before them), the queue went from empty to
non-empty and ``sub_pick.lua`` chooses whom to tell, atomically across processes
(``fanout``: every subscription; ``group``: the next in round-robin per groupId;
``hash``: per groupId, the first in rendezvous order of the queue, so one queue keeps
going to the same subscriber), honouring each subscription's ``minIntervalSeconds``.

Sending never blocks a round, and no tenant can starve another: chosen notifications
wait in a bounded queue per tenant (``tenant_queue``), and free sending slots
(``concurrency``) are handed to the tenants' queues in round-robin order, at most
``tenant_concurrency`` in flight per tenant. A subscription has at most one
notification queued or in flight; anything beyond (a busy subscriber, a full tenant
queue, a notification that waited longer than ``interval``) is dropped and counted,
and logged as one ``notification.dropped`` line per ``DROP_LOG_INTERVAL`` with the
count. No retries. A failing send (refused, timed out, a URL httpx cannot call) is a
failed notification, logged and counted, never an error of the actor. A tenant's
subscriptions are cached for ``interval`` and dropped at once on a
``SubscriptionsChanged`` hint for the tenant (all of them on a ``Resync``); while a
tenant's cached list is empty, its queues' hints are refused at the inbox and wake
nothing.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
import trio

from codeqd.actors._outbound import (
    DELIVERIES,
    Attempt,
    host_of,
    open_clients,
    post,
    resolve_secret,
)
from codeqd.config import NotifierConfig
from codeqd.context import Context
from codeqd.domain.errors import StoreUnavailable
from codeqd.domain.subscription import matches, plan
from codeqd.domain.task import rfc3339
from codeqd.live import Live, run_loop
from codeqd.store import (
    Hint,
    QueueWork,
    Resync,
    SubscriptionsChanged,
    now_ms,
)

log = structlog.get_logger("codeqd.notifier")

CLAIM_PATH = "/v1/codeq/tasks/claim"


async def run(
    ctx: Context,
    live: Live[NotifierConfig],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    await Notifier(ctx, live).run(task_status=task_status)


class Notifier:
    def __init__(self, ctx: Context, live: Live[NotifierConfig]) -> None:
        self.ctx = ctx
        self.live = live
        self.subs = ctx.store.subscriptions
        self.limiter = trio.CapacityLimiter(live.value.concurrency)
        self.pending: dict[str, int] = {}
        self.cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        #: Bumped by every change of subscriptions offered: a list read before one is
        #: not cached (see ``_subscriptions``).
        self.cache_gen = 0
        # Pub/sub's copy only: each transition is counted once (see ``_consider``).
        self.inbox = ctx.store.wakeups.inbox(
            "notifier",
            (QueueWork, SubscriptionsChanged, Resync),
            size=4096,
            own="none",
            accept=self._wanted,
        )
        #: Subscriptions with a notification queued or in flight (at most one each).
        self.in_flight: set[str] = set()
        #: Per tenant: notifications waiting for a slot, in order; ``turns`` is the
        #: round-robin order of tenants with a non-empty queue; ``tenant_busy`` counts
        #: each tenant's sends in flight.
        self.queues: dict[str, deque[_Note]] = {}
        self.turns: deque[str] = deque()
        self.tenant_busy: Counter[str] = Counter()
        self.drops = DropLog()
        #: Rounds finished; ``round_done`` is set (and replaced) after each (for tests).
        self.rounds = 0
        self.round_done = trio.Event()
        self.secret = ""
        self.client: Any = None  # Clients, once running
        self._senders: trio.Nursery | None = None
        self.claim_url = (
            ctx.config.webhooks.public_url.rstrip("/") + CLAIM_PATH
            if ctx.config.webhooks.public_url
            else CLAIM_PATH
        )

    # ------------------------------------------------------------ hints

    def _wanted(self, hint: Hint) -> bool:
        """Whether to take a hint, as it is offered (in the order they come): a queue's
        work unless its tenant is known, from a fresh cache, to have no subscription
        (most tenants: then a round would only learn that again). A change of
        subscriptions empties the tenant's cache here, as it is offered, before the work
        hinted after it is judged."""
        if isinstance(hint, QueueWork):
            cached = self.cache.get(hint.tenant)
            return cached is None or bool(cached[1]) or cached[0] <= trio.current_time()
        self._forget(hint.tenant if isinstance(hint, SubscriptionsChanged) else None)
        return True

    def _forget(self, tenant: str | None) -> None:
        """Drop the cached subscriptions of ``tenant`` (None: of every tenant), and keep
        a list being read meanwhile out of the cache (``_subscriptions``)."""
        self.cache_gen += 1
        if tenant is None:
            self.cache.clear()
        else:
            self.cache.pop(tenant, None)

    def _apply(self, hint: Hint) -> None:
        if isinstance(hint, QueueWork):
            queue = f"{hint.tenant}|{hint.command}"
            self.pending[queue] = self.pending.get(queue, 0) + hint.count
        elif isinstance(hint, Resync):  # also the inbox's own, after it overflowed
            self._forget(None)

    async def _wake(self) -> None:
        """Until a hint arrives; it and every hint waiting with it are applied."""
        self._apply(await self.inbox.get())
        for hint in self.inbox.drain():
            self._apply(hint)

    # ------------------------------------------------------------ loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.secret = resolve_secret(self.ctx.config.webhooks)
        try:
            async with (
                open_clients(self.ctx.config.webhooks) as self.client,
                trio.open_nursery() as outer,
            ):
                outer.start_soon(self.drops.run)
                async with trio.open_nursery() as senders:
                    self._senders = senders
                    await run_loop(
                        "notifier",
                        self.live,
                        self.ctx.shutting_down,
                        self._round,
                        wake=self._wake,
                        task_status=task_status,
                    )
                    senders.cancel_scope.cancel()  # best effort: nothing to finish on shutdown
                self._senders = None
                self.drops.flush()
                outer.cancel_scope.cancel()
        finally:
            self.ctx.store.wakeups.remove(self.inbox)

    async def _round(self, cfg: NotifierConfig) -> int:
        """Look once at every queue hinted since the last round (the step of the loop;
        it never reports a full batch: hints, not a backlog, drive it)."""
        if self.limiter.total_tokens != cfg.concurrency:
            self.limiter.total_tokens = cfg.concurrency
        for hint in self.inbox.drain():
            self._apply(hint)
        batch, self.pending = self.pending, {}
        for queue, count in batch.items():
            try:
                await self._consider(queue, count, cfg)
            except StoreUnavailable as e:
                log.warning("notifier.store_unavailable", error=str(e))
            except Exception as e:  # best effort: one queue's trouble, not the actor's
                log.error("notifier.queue_failed", queue=queue, exc_info=e)
        self._pump()
        self.rounds += 1
        self.round_done.set()
        self.round_done = trio.Event()
        return 0

    async def _subscriptions(self, ten: str, cfg: NotifierConfig) -> list[dict[str, Any]]:
        now = trio.current_time()
        cached = self.cache.get(ten)
        if cached is not None and cached[0] > now:
            return cached[1]
        gen = self.cache_gen
        subs = await self.subs.active(ten)
        if gen == self.cache_gen:  # no change came while it was read: keep it
            self.cache[ten] = (now + float(cfg.interval), subs)
        return subs

    async def _consider(self, queue: str, count: int, cfg: NotifierConfig) -> None:
        ten, _, cmd = queue.partition("|")
        matching = [
            s
            for s in await self._subscriptions(ten, cfg)
            if isinstance(s.get("id"), str) and matches(s, cmd)
        ]
        if not matching:
            return
        depth = await self.subs.ready_depth(ten, cmd)
        if not 0 < depth <= count:
            return  # nothing left to claim, or the queue was not empty before
        chosen = await self.subs.pick(
            ten, cmd, plan(matching, queue), int(float(cfg.dedup_window) * 1000)
        )
        by_id = {s["id"]: s for s in matching}
        for sub_id in chosen:
            self._send(by_id[sub_id], ten, cmd, depth, cfg)

    # ------------------------------------------------------------ sending

    def _send(
        self, sub: dict[str, Any], ten: str, cmd: str, depth: int, cfg: NotifierConfig
    ) -> None:
        """Queue one notification for the tenant's turn, or drop it when one to ``sub``
        is still queued or in flight, or the tenant's queue is full."""
        sub_id = sub["id"]
        if sub_id in self.in_flight:
            self.drops.add("subscriber_busy", ten, cmd, sub_id)
            return
        queue = self.queues.get(ten)
        if queue is None:
            queue = self.queues[ten] = deque()
            self.turns.append(ten)
        if len(queue) >= cfg.tenant_queue:
            self.drops.add("tenant_queue_full", ten, cmd, sub_id)
            return
        self.in_flight.add(sub_id)
        queue.append(_Note(sub, ten, cmd, depth, trio.current_time()))

    def _pump(self) -> None:
        """Hand free slots to the tenants' queues in turn (synchronous: called after a
        round and whenever a send ends)."""
        if self._senders is None or self.ctx.shutting_down.is_set():
            return  # best effort: what waits is not sent on shutdown
        cfg = self.live.value
        now = trio.current_time()
        passed = 0  # tenants in a row that could not send (at their own limit)
        while self.turns and passed < len(self.turns) and self.limiter.available_tokens > 0:
            ten = self.turns[0]
            self.turns.rotate(-1)
            if self.tenant_busy[ten] >= cfg.tenant_concurrency:
                passed += 1
                continue
            passed = 0
            queue = self.queues[ten]
            note = queue.popleft()
            if not queue:
                del self.queues[ten]
                self.turns.pop()  # ``ten``, rotated to the end
            if now - note.queued_at > float(cfg.interval):
                self.in_flight.discard(note.sub["id"])
                self.drops.add("stale", ten, note.cmd, note.sub["id"])
                continue
            self.limiter.acquire_on_behalf_of_nowait(note)
            self.tenant_busy[ten] += 1
            self._senders.start_soon(self._deliver, note, float(cfg.timeout))

    def _body(self, note: _Note) -> bytes:
        return orjson.dumps(
            {
                "eventType": note.cmd,
                "available": True,
                "queueDepth": note.depth,
                "claimUrl": self.claim_url,
                "sentAt": rfc3339(now_ms()),
                "notificationId": f"ntf-{uuid.uuid4().hex}",
            }
        )

    async def _deliver(self, note: _Note, timeout: float) -> None:
        sub, cmd = note.sub, note.cmd
        fields = {
            "subscription_id": sub["id"],
            "tenant": sub.get("tenantId"),
            "command": cmd,
            "destination": host_of(sub.get("callbackUrl")),
        }
        try:
            url = sub.get("callbackUrl")
            if not isinstance(url, str) or not url:
                attempt = Attempt(None, "the stored callbackUrl is not a URL", 0.0)
            else:
                attempt = await post(self.client, url, self._body(note), self.secret, timeout)
        except Exception as e:  # never the actor's failure: one notification's
            attempt = Attempt(None, f"{type(e).__name__}: {e}", 0.0)
        try:
            if attempt.ok:
                DELIVERIES.labels("queue_ready", cmd, "success").inc()
                log.debug(
                    "notification.sent",
                    status_code=attempt.status,
                    duration_ms=attempt.duration_ms,
                    **fields,
                )
            else:
                DELIVERIES.labels("queue_ready", cmd, "failure").inc()
                log.info(
                    "notification.failed", error=attempt.error, status_code=attempt.status, **fields
                )
        finally:
            self.in_flight.discard(sub["id"])
            self.tenant_busy[note.ten] -= 1
            if self.tenant_busy[note.ten] <= 0:
                del self.tenant_busy[note.ten]
            self.limiter.release_on_behalf_of(note)
            self._pump()


@dataclass(eq=False)  # hashed by identity: a limiter borrower
class _Note:
    sub: dict[str, Any]
    ten: str
    cmd: str
    depth: int
    queued_at: float


#: At most one ``notification.dropped`` line per this many seconds (with the count).
DROP_LOG_INTERVAL = 10.0


class DropLog:
    """Counts dropped notifications; logs the first at once, then one line per
    ``every`` seconds with the count since the last line (and one sample)."""

    def __init__(self, every: float = DROP_LOG_INTERVAL) -> None:
        self.every = every
        self.reasons: Counter[str] = Counter()
        self.sample: dict[str, str] = {}
        self.next_at = -math.inf
        self.lines = 0  # for tests

    def add(self, reason: str, ten: str, cmd: str, sub_id: str) -> None:
        DELIVERIES.labels("queue_ready", cmd, "dropped").inc()
        self.reasons[reason] += 1
        self.sample = {"subscription_id": sub_id, "tenant": ten, "command": cmd}
        if trio.current_time() >= self.next_at:
            self.flush()

    def flush(self) -> None:
        if not self.reasons:
            return
        self.lines += 1
        log.info(
            "notification.dropped",
            count=sum(self.reasons.values()),
            reasons=dict(self.reasons),
            interval_seconds=self.every,
            **self.sample,
        )
        self.reasons.clear()
        self.next_at = trio.current_time() + self.every

    async def run(self) -> None:
        """Flush what accumulated once its interval is over, until cancelled."""
        while True:
            await trio.sleep(max(0.0, self.next_at - trio.current_time()) or self.every)
            if trio.current_time() >= self.next_at:
                self.flush()
