"""The notifier: tells subscribed workers that a queue has work. Best effort.

Hints come from the wake channel (``N:ten|cmd`` when N tasks of a queue became
claimable by enqueue, promotion, requeue, replay or resume). Messages are summed per
queue while a round runs; a round then looks at each queue once: if the tenant has
matching subscriptions and the ready depth is at most the number of tasks just made
claimable (so the queue was empty before them), the queue went from empty to
non-empty and ``sub_pick.lua`` chooses whom to tell, atomically across processes
(``fanout``: every subscription; ``group``: the next in round-robin per groupId;
``hash``: per groupId, the first in rendezvous order of the queue, so one queue keeps
going to the same subscriber), honouring each subscription's ``minIntervalSeconds``.

Sending never blocks a round: each notification runs in its own task, at most
``concurrency`` at once and at most one per subscription; anything beyond is dropped
(and counted). No retries. A tenant's subscriptions are cached for ``interval`` and
dropped at once when the subscriptions channel names the tenant.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from functools import partial
from typing import Any

import orjson
import structlog
import trio

from codeqd.actors._live import Live
from codeqd.actors._outbound import DELIVERIES, host_of, open_clients, post, resolve_secret
from codeqd.config import NotifierConfig
from codeqd.context import Context
from codeqd.domain.errors import StoreUnavailable
from codeqd.domain.subscription import matches
from codeqd.domain.task import rfc3339
from codeqd.store._store import now_ms
from codeqd.store._subscriptions import PickUnit, Subscriptions
from codeqd.store._wakeups import listen

log = structlog.get_logger("codeqd.notifier")

CLAIM_PATH = "/v1/codeq/tasks/claim"


def plan(subs: list[dict[str, Any]], queue: str) -> list[PickUnit]:
    """The choice units for one event of ``queue`` (see ``sub_pick.lua``)."""
    units: list[PickUnit] = []
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    hashed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sub in sorted(subs, key=lambda s: s["id"]):
        mode = sub.get("deliveryMode", "fanout")
        if mode == "group":
            groups[sub.get("groupId", "")].append(sub)
        elif mode == "hash":
            hashed[sub.get("groupId", "")].append(sub)
        else:
            units.append(PickUnit([sub]))
    units += [PickUnit(members, round_robin=group) for group, members in groups.items()]
    for members in hashed.values():

        def weight(sub: dict[str, Any]) -> bytes:
            return hashlib.sha256(f"{queue}|{sub['id']}".encode()).digest()

        units.append(PickUnit(sorted(members, key=weight, reverse=True)))
    return units


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
        self.subs = Subscriptions(ctx.store)
        self.limiter = trio.CapacityLimiter(live.value.concurrency)
        self.pending: dict[str, int] = {}
        self.arrived = trio.Event()
        self.cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self.in_flight: set[str] = set()
        #: Rounds finished; ``round_done`` is set (and replaced) after each (for tests).
        self.rounds = 0
        self.round_done = trio.Event()
        self.secret = ""
        self.client: Any = None  # Clients, once running
        self._senders: trio.Nursery | None = None
        keys = ctx.store.keys
        self.claim_url = (
            ctx.config.webhooks.public_url.rstrip("/") + CLAIM_PATH
            if ctx.config.webhooks.public_url
            else CLAIM_PATH
        )
        # Every shard's wake channel, and the any-shard one.
        self._wake_channels = {keys.wake_channel, *(k.wake for k in keys.all())}
        self._subs_channel = keys.subs_channel

    # ------------------------------------------------------------ hints

    def _on_message(self, channel: str, data: str) -> None:
        if channel in self._wake_channels:
            count, _, queue = data.partition(":")
            self.pending[queue] = self.pending.get(queue, 0) + (
                int(count) if count.isdigit() else 1
            )
            self.arrived.set()
        elif channel == self._subs_channel:
            self.cache.pop(data, None)

    def _on_connect(self) -> None:
        self.cache.clear()

    # ------------------------------------------------------------ loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.secret = resolve_secret(self.ctx.config.webhooks)
        async with (
            open_clients(self.ctx.config.webhooks) as self.client,
            trio.open_nursery() as outer,
        ):
            await outer.start(
                partial(listen, event="webhooks.hints_disconnected"),
                self.ctx.store,
                [*sorted(self._wake_channels), self._subs_channel],
                self._on_message,
                self._on_connect,
            )
            async with trio.open_nursery() as senders:
                self._senders = senders
                task_status.started()
                await self._rounds()
                senders.cancel_scope.cancel()  # best effort: nothing to finish on shutdown
            outer.cancel_scope.cancel()

    async def _rounds(self) -> None:
        stopping = self.ctx.shutting_down
        while not stopping.is_set():
            await self._wait(stopping, self.arrived, self.live.changed)
            cfg = self.live.value
            if self.limiter.total_tokens != cfg.concurrency:
                self.limiter.total_tokens = cfg.concurrency
            self.arrived = trio.Event()
            batch, self.pending = self.pending, {}
            if cfg.enabled:
                for queue, count in batch.items():
                    try:
                        await self._consider(queue, count, cfg)
                    except StoreUnavailable as e:
                        log.warning("notifier.store_unavailable", error=str(e))
            self.rounds += 1
            self.round_done.set()
            self.round_done = trio.Event()

    @staticmethod
    async def _wait(*events: trio.Event) -> None:
        async with trio.open_nursery() as nursery:

            async def wait(ev: trio.Event) -> None:
                await ev.wait()
                nursery.cancel_scope.cancel()

            for ev in events:
                nursery.start_soon(wait, ev)

    async def _subscriptions(self, ten: str, cfg: NotifierConfig) -> list[dict[str, Any]]:
        now = trio.current_time()
        cached = self.cache.get(ten)
        if cached is not None and cached[0] > now:
            return cached[1]
        subs = await self.subs.active(ten)
        self.cache[ten] = (now + float(cfg.interval), subs)
        return subs

    async def _consider(self, queue: str, count: int, cfg: NotifierConfig) -> None:
        ten, _, cmd = queue.partition("|")
        matching = [s for s in await self._subscriptions(ten, cfg) if matches(s, cmd)]
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
            self._send(by_id[sub_id], cmd, depth, cfg)

    # ------------------------------------------------------------ sending

    def _send(self, sub: dict[str, Any], cmd: str, depth: int, cfg: NotifierConfig) -> None:
        """Start one notification, or drop it when saturated or one to ``sub`` is still
        in flight (a slow subscriber never holds more than one slot)."""
        sub_id = sub["id"]
        if sub_id in self.in_flight:
            self._dropped(sub, cmd, "subscriber_busy")
            return
        try:
            self.limiter.acquire_on_behalf_of_nowait(sub_id)
        except trio.WouldBlock:
            self._dropped(sub, cmd, "saturated")
            return
        assert self._senders is not None
        self.in_flight.add(sub_id)
        body = orjson.dumps(
            {
                "eventType": cmd,
                "available": True,
                "queueDepth": depth,
                "claimUrl": self.claim_url,
                "sentAt": rfc3339(now_ms()),
                "notificationId": f"ntf-{uuid.uuid4().hex}",
            }
        )
        self._senders.start_soon(self._deliver, sub, cmd, body, float(cfg.timeout))

    def _dropped(self, sub: dict[str, Any], cmd: str, reason: str) -> None:
        DELIVERIES.labels("queue_ready", cmd, "dropped").inc()
        log.info("notification.dropped", subscription_id=sub["id"], command=cmd, reason=reason)

    async def _deliver(self, sub: dict[str, Any], cmd: str, body: bytes, timeout: float) -> None:
        fields = {
            "subscription_id": sub["id"],
            "tenant": sub.get("tenantId"),
            "command": cmd,
            "destination": host_of(sub["callbackUrl"]),
        }
        try:
            attempt = await post(self.client, sub["callbackUrl"], body, self.secret, timeout)
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
            self.limiter.release_on_behalf_of(sub["id"])
