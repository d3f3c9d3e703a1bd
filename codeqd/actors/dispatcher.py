"""The dispatcher: sends result callbacks from the durable outbox, with retries.

Two kinds of task talk over one trio memory channel of capacity 0: the claimer
(the ``run_loop`` step) leases at most ``min(batch, idle senders)`` due entries and
hands each straight to an idle sender; ``concurrency`` sender tasks each take one
entry at a time and send it, bounded by ``timeout``. So an entry never waits in
memory with its lease running, and backpressure is the channel's. A 2xx settles the
entry as delivered; anything else is retried after ``base_backoff * 2^(attempt-1)``
(capped by ``max_backoff``) until ``max_attempts``, then recorded as failed on the
task. The lease is ``timeout`` plus a margin: a process that dies mid-send leaves
the entry to be sent again once the lease runs out.

Wake-ups: the dispatcher's inbox takes ``TaskDone`` hints of tasks done with a result
callback (the outbox has an entry; one done without is refused at the inbox); a hint
ends the claimer's sleep at once (hints that arrive meanwhile are coalesced), and so
does a sender freeing up while all were busy. Otherwise the claimer sleeps until the
earliest entry is due, at most ``interval``. Shutdown: no new rounds; the channel is
closed, and the senders finish what they hold (each within ``timeout``) and end.
"""

from __future__ import annotations

from typing import Any

import structlog
import trio

from codeqd import tracing
from codeqd.actors._outbound import (
    DELIVERIES,
    Attempt,
    host_of,
    open_clients,
    post,
    resolve_secret,
)
from codeqd.config import DispatcherConfig
from codeqd.context import Context
from codeqd.domain.callbacks import backoff_seconds, callback_body, lease_ms
from codeqd.domain.errors import StoreUnavailable
from codeqd.live import Live, run_loop
from codeqd.store import Hint, OutboxEntry, Resync, TaskDone, now_ms

log = structlog.get_logger("codeqd.dispatcher")

#: Extension: which attempt this is (1, 2, ...); a receiver may see an attempt again
#: only if it answered too late (at-least-once), never because two processes sent it.
ATTEMPT_HEADER = "X-CodeQ-Attempt"


async def run(
    ctx: Context,
    live: Live[DispatcherConfig],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    await Dispatcher(ctx, live).run(task_status=task_status)


def _may_have_callback(hint: Hint) -> bool:
    """The hints that may mean work: a task done with a result callback, a resync."""
    return not isinstance(hint, TaskDone) or hint.callback


class Dispatcher:
    def __init__(self, ctx: Context, live: Live[DispatcherConfig]) -> None:
        self.ctx = ctx
        self.live = live
        self.outbox = ctx.store.outbox
        self.inbox = ctx.store.wakeups.inbox(
            "dispatcher", (TaskDone, Resync), size=256, accept=_may_have_callback
        )
        self._entries_in, self._entries_out = trio.open_memory_channel[OutboxEntry](0)
        #: Senders running, and how many of them wait for an entry now.
        self.senders = 0
        self.idle = 0
        self._retire = 0  # senders to stop after a SIGHUP lowered ``concurrency``
        self.freed = trio.Event()
        self.saturated = False
        self.next_due: int | None = None
        self.secret = ""
        self.client: Any = None  # Clients, once running
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ctx = self.ctx
        self.secret = resolve_secret(ctx.config.webhooks)
        try:
            async with (
                open_clients(ctx.config.webhooks) as self.client,
                trio.open_nursery() as self._nursery,
                self._entries_in,
            ):
                await run_loop(
                    "dispatcher",
                    self.live,
                    ctx.shutting_down,
                    self._step,
                    wake=self._wake,
                    idle=self._idle,
                    task_status=task_status,
                )
                # The channel is closed: each sender ends after what it holds.
        finally:
            ctx.store.wakeups.remove(self.inbox)

    def _resize(self, concurrency: int) -> None:
        """Start or retire senders to match ``concurrency`` (changed by SIGHUP)."""
        assert self._nursery is not None
        while self.senders < concurrency:
            self.senders += 1
            self._nursery.start_soon(self._sender)
        self._retire = self.senders - concurrency

    async def _step(self, cfg: DispatcherConfig) -> int:
        self._resize(cfg.concurrency)
        self.freed = trio.Event()
        wanted = min(self.idle, cfg.batch)
        claimed: list[OutboxEntry] = []
        self.next_due = None
        if wanted > 0:
            claimed, self.next_due = await self.outbox.claim(
                now_ms(), lease_ms(float(cfg.timeout)), wanted
            )
            for entry in claimed:
                await self._entries_in.send(entry)  # an idle sender takes it at once
        # Saturated: the next round starts when a sender frees up, not before.
        self.saturated = wanted == 0 or len(claimed) == wanted
        if claimed and len(claimed) == wanted and self.idle > 0:
            return cfg.batch  # a full round: there may be more due now
        return len(claimed)

    def _idle(self, cfg: DispatcherConfig) -> float:
        timeout = float(cfg.interval)
        if self.next_due is not None:
            timeout = min(timeout, (self.next_due - now_ms()) / 1000)
        return max(0.0, timeout)

    async def _wake(self) -> None:
        """Until a hint that the outbox may have work arrives (coalesced: a queued
        callback, or a resync) or a sender frees up while all were busy. A task done
        without a callback is no reason to look."""
        async with trio.open_nursery() as nursery:

            async def hint() -> None:
                await self.inbox.get()  # only hints of work come (``_may_have_callback``)
                self.inbox.drain()
                nursery.cancel_scope.cancel()

            async def freed() -> None:
                await self.freed.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(hint)
            nursery.start_soon(freed)

    async def _sender(self) -> None:
        """Send entries from the channel, one at a time, until it is closed (or this
        sender is retired by a lower ``concurrency``)."""
        try:
            while True:
                if self._retire > 0:
                    self._retire -= 1
                    return
                self.idle += 1
                try:
                    entry = await self._entries_out.receive()
                except trio.EndOfChannel:
                    return
                finally:
                    self.idle -= 1
                await self._deliver(entry, self.live.value)
                if self.saturated:
                    self.freed.set()
        finally:
            self.senders -= 1

    async def _deliver(self, entry: OutboxEntry, cfg: DispatcherConfig) -> None:
        """Send one attempt and settle it. Never raises (but Cancelled): an error of this
        entry's own — a URL that cannot be called, metadata we cannot render, anything
        raised while sending — is a failed attempt, retried and finally ``FAILED``; an
        error settling it leaves the entry to its lease (sent again when it runs out)."""
        meta = entry.meta
        command = str(meta.get("command", "?"))
        fields = {
            "task_id": entry.task_id,
            "tenant": meta.get("tenantId"),
            "command": command,
            "attempt": entry.attempt,
            "destination": host_of(meta.get("webhook")),
        }
        try:
            attempt = await self._send(entry, cfg)
            await self._settle(entry, attempt, cfg, command, fields)
        except StoreUnavailable as e:
            # The lease runs out and the entry is sent again: at-least-once.
            log.warning("webhook.settle_failed", error=str(e), **fields)
        except Exception as e:
            log.error(
                "webhook.settle_failed", error=f"{type(e).__name__}: {e}", exc_info=e, **fields
            )

    async def _send(self, entry: OutboxEntry, cfg: DispatcherConfig) -> Attempt:
        url = entry.meta.get("webhook")
        if not isinstance(url, str) or not url:
            return Attempt(None, "the stored webhook is not a URL", 0.0)
        try:
            body = callback_body(entry.meta, entry.result)
        except Exception as e:
            return Attempt(None, f"cannot render the callback: {type(e).__name__}: {e}", 0.0)
        # The trace the task was created in continues in the callback (SPEC §8).
        with tracing.callback_trace(entry.meta, host_of(url), entry.attempt) as trace:
            attempt = await post(
                self.client,
                url,
                body,
                self.secret,
                float(cfg.timeout),
                {ATTEMPT_HEADER: str(entry.attempt), **trace.headers},
            )
            trace.finish(attempt.status, attempt.error)
        return attempt

    async def _settle(
        self,
        entry: OutboxEntry,
        attempt: Attempt,
        cfg: DispatcherConfig,
        command: str,
        fields: dict[str, Any],
    ) -> None:
        now = now_ms()
        if attempt.ok:
            await self.outbox.settle(entry, "delivered", now_ms=now, http_status=attempt.status)
            DELIVERIES.labels("result", command, "success").inc()
            log.info(
                "webhook.delivered",
                status_code=attempt.status,
                duration_ms=attempt.duration_ms,
                **fields,
            )
        elif entry.attempt >= cfg.max_attempts:
            await self.outbox.settle(
                entry, "failed", now_ms=now, error=attempt.error, http_status=attempt.status
            )
            DELIVERIES.labels("result", command, "failure").inc()
            log.warning(
                "webhook.failed",
                error=attempt.error,
                status_code=attempt.status,
                max_attempts=cfg.max_attempts,
                **fields,
            )
        else:
            delay = backoff_seconds(float(cfg.base_backoff), float(cfg.max_backoff), entry.attempt)
            await self.outbox.settle(
                entry,
                "retry",
                now_ms=now,
                retry_at_ms=now + int(delay * 1000),
                error=attempt.error,
                http_status=attempt.status,
            )
            DELIVERIES.labels("result", command, "retry").inc()
            log.info(
                "webhook.retry",
                error=attempt.error,
                status_code=attempt.status,
                retry_in=delay,
                **fields,
            )
