"""The dispatcher: sends result callbacks from the durable outbox, with retries.

Each round leases at most ``min(batch, free slots)`` due entries (so nothing waits
in memory with its lease running) and sends each in its own task, at most
``concurrency`` at once, each bounded by ``timeout``. A 2xx settles the entry as
delivered; anything else is retried after ``base_backoff * 2^(attempt-1)`` (capped by
``max_backoff``) until ``max_attempts``, then recorded as failed on the task. The
lease is ``timeout`` plus a margin: a process that dies mid-send leaves the entry to
be sent again once the lease runs out.

Wake-ups: terminal steps publish the task on the done channel; any message starts a
round at once (coalesced while a round runs). Otherwise the dispatcher sleeps until
the earliest entry is due, at most ``interval``. Shutdown: no new rounds; callbacks
in flight finish (each within ``timeout``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson
import structlog
import trio

from codeqd.actors._live import Live, _wait_any
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
from codeqd.domain.errors import StoreUnavailable
from codeqd.domain.task import synthesized_result
from codeqd.store._outbox import Outbox, OutboxEntry
from codeqd.store._store import now_ms
from codeqd.store._wakeups import listen

log = structlog.get_logger("codeqd.dispatcher")

#: Extension: which attempt this is (1, 2, ...); a receiver may see an attempt again
#: only if it answered too late (at-least-once), never because two processes sent it.
ATTEMPT_HEADER = "X-CodeQ-Attempt"


def lease_ms(cfg: DispatcherConfig) -> int:
    timeout = float(cfg.timeout)
    return int((timeout + min(timeout, 5.0)) * 1000)


def backoff_seconds(cfg: DispatcherConfig, attempt: int) -> float:
    return float(min(float(cfg.max_backoff), float(cfg.base_backoff) * 2 ** (attempt - 1)))


def callback_body(entry: OutboxEntry) -> bytes:
    """The callback document: the stored Result, or one synthesized for a task that
    ended without a worker's report (dead-lettered, cancelled)."""
    meta = entry.meta
    doc = (
        entry.result
        if entry.result and entry.result.get("status") == meta["status"]
        else synthesized_result(meta)
    )
    doc = doc or {}
    return orjson.dumps(
        {
            "taskId": meta["id"],
            "eventType": meta["command"],
            "status": meta["status"],
            "result": doc.get("result"),
            "error": doc.get("error"),
            "artifacts": doc.get("artifacts") or [],
            "completedAt": doc.get("completedAt"),
        }
    )


class _Wake:
    """A coalescing wake-up: any number of ``set`` calls before a wait make one wake-up."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def set(self) -> None:
        self.event.set()

    def clear(self) -> None:
        if self.event.is_set():
            self.event = trio.Event()


async def run(
    ctx: Context,
    live: Live[DispatcherConfig],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    await Dispatcher(ctx, live).run(task_status=task_status)


class Dispatcher:
    def __init__(self, ctx: Context, live: Live[DispatcherConfig]) -> None:
        self.ctx = ctx
        self.live = live
        self.outbox = Outbox(ctx.store)
        self.limiter = trio.CapacityLimiter(live.value.concurrency)
        self.wake = _Wake()
        self.saturated = False
        self.secret = ""
        self.client: Any = None  # Clients, once running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ctx = self.ctx
        self.secret = resolve_secret(ctx.config.webhooks)
        async with open_clients(ctx.config.webhooks) as self.client, trio.open_nursery() as outer:
            await outer.start(
                partial(listen, event="webhooks.hints_disconnected"),
                ctx.store,
                [ctx.store.keys.done_channel],
                lambda _c, _d: self.wake.set(),
                self.wake.set,
            )
            async with trio.open_nursery() as senders:
                task_status.started()
                await self._rounds(senders)
            outer.cancel_scope.cancel()

    async def _rounds(self, senders: trio.Nursery) -> None:
        stopping = self.ctx.shutting_down
        while not stopping.is_set():
            cfg = self.live.value
            if self.limiter.total_tokens != cfg.concurrency:
                self.limiter.total_tokens = cfg.concurrency
            if not cfg.enabled:
                await _wait_any(stopping, self.live.changed, None)
                continue
            self.wake.clear()
            wanted = min(int(self.limiter.available_tokens), cfg.batch)
            next_due: int | None = None
            claimed: list[OutboxEntry] = []
            if wanted > 0:
                try:
                    claimed, next_due = await self.outbox.claim(now_ms(), lease_ms(cfg), wanted)
                except StoreUnavailable as e:
                    log.warning("dispatcher.store_unavailable", error=str(e))
                for entry in claimed:
                    self.limiter.acquire_on_behalf_of_nowait(entry)
                    senders.start_soon(self._deliver, entry, cfg)
            # Saturated: the next round starts when a slot frees up, not before.
            self.saturated = wanted == 0 or len(claimed) == wanted
            if claimed and len(claimed) == wanted and self.limiter.available_tokens > 0:
                await trio.lowlevel.checkpoint()
                continue  # a full batch: there may be more due now
            timeout = float(cfg.interval)
            if next_due is not None:
                timeout = max(0.0, min(timeout, (next_due - now_ms()) / 1000))
            await self._sleep(timeout)

    async def _sleep(self, timeout: float) -> None:
        """Until a wake-up, a config change, shutdown or ``timeout`` seconds."""
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:

                async def wait(ev: trio.Event) -> None:
                    await ev.wait()
                    nursery.cancel_scope.cancel()

                for ev in (self.ctx.shutting_down, self.live.changed, self.wake.event):
                    nursery.start_soon(wait, ev)

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
        finally:
            self.limiter.release_on_behalf_of(entry)
            if self.saturated:
                self.wake.set()

    async def _send(self, entry: OutboxEntry, cfg: DispatcherConfig) -> Attempt:
        url = entry.meta.get("webhook")
        if not isinstance(url, str) or not url:
            return Attempt(None, "the stored webhook is not a URL", 0.0)
        try:
            body = callback_body(entry)
        except Exception as e:
            return Attempt(None, f"cannot render the callback: {type(e).__name__}: {e}", 0.0)
        return await post(
            self.client,
            url,
            body,
            self.secret,
            float(cfg.timeout),
            {ATTEMPT_HEADER: str(entry.attempt)},
        )

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
            await self.outbox.settle(entry, "delivered", now_ms=now)
            DELIVERIES.labels("result", command, "success").inc()
            log.info(
                "webhook.delivered",
                status_code=attempt.status,
                duration_ms=attempt.duration_ms,
                **fields,
            )
        elif entry.attempt >= cfg.max_attempts:
            await self.outbox.settle(entry, "failed", now_ms=now, error=attempt.error)
            DELIVERIES.labels("result", command, "failure").inc()
            log.warning(
                "webhook.failed",
                error=attempt.error,
                status_code=attempt.status,
                max_attempts=cfg.max_attempts,
                **fields,
            )
        else:
            delay = backoff_seconds(cfg, entry.attempt)
            await self.outbox.settle(
                entry,
                "retry",
                now_ms=now,
                retry_at_ms=now + int(delay * 1000),
                error=attempt.error,
            )
            DELIVERIES.labels("result", command, "retry").inc()
            log.info(
                "webhook.retry",
                error=attempt.error,
                status_code=attempt.status,
                retry_in=delay,
                **fields,
            )
