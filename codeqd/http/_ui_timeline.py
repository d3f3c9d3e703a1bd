"""A task's timeline for the dashboard, behind one function: ``task_timeline``.

The store keeps each task's last 50 events, written by the scripts in the same atomic
step as each transition, or told by its record (``Store.task_events``); the timeline
renders them. A task written before the store kept events has none beyond ``created``
(its record shows more than a first claim and its result): its timeline is then
*reconstructed* from what the task record holds (created, the latest claim, the last
error, the result, the callback's progress, cancel), and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codeqd.domain.events import EVENTS_MAX, TaskEvent
from codeqd.domain.task import rfc3339
from codeqd.store import Meta, Store


@dataclass(frozen=True)
class TimelineEvent:
    at: str | None  # RFC 3339, None when the record does not say when
    kind: str  # created, claimed, retry, dead_lettered, result, cancelled, callback
    detail: str


@dataclass(frozen=True)
class Timeline:
    events: list[TimelineEvent]
    reconstructed: bool  # True: derived from the task record, not a recorded history
    #: True: the task has more events than the store keeps; the oldest were dropped.
    truncated: bool = False


def _at(ms: Any) -> str | None:
    return rfc3339(ms) if isinstance(ms, int | float) and ms > 0 else None


_RETRIES = {
    "nacked": "nacked",
    "abandoned": "abandoned",
    "released": "released (claim not delivered)",
    "expired": "lease expired",
}


def _retry_detail(ev: TaskEvent) -> str:
    f = ev.fields
    text = _RETRIES[ev.kind]
    if f.get("worker"):
        text += f" (worker {f['worker']}, lease {f.get('leaseId') or '?'})"
    if f.get("reason") and ev.kind in ("nacked", "abandoned"):
        text += f": {f['reason']}"
    delay = f.get("delayMs")
    if delay == -1:
        return text + "; attempts exhausted"
    if isinstance(delay, int) and delay > 0:
        return text + f"; claimable again at {_at(ev.at + delay)}"
    return text + "; claimable again now"


def _recorded(ev: TaskEvent) -> list[TimelineEvent]:
    """One recorded event as the page shows it (a retry that dead-lettered is two)."""
    f, at = ev.fields, _at(ev.at)
    if ev.kind == "created":
        return [TimelineEvent(at, "created", f"task created by {f.get('by') or '?'}")]
    if ev.kind == "claimed":
        who = f.get("worker") or "?"
        detail = f"attempt {f.get('attempt')} by worker {who}, lease {f.get('leaseId')}"
        return [TimelineEvent(at, "claimed", detail)]
    if ev.kind == "heartbeat":
        n = f.get("count", 1)
        detail = f"{n} heartbeat(s), the last at {_at(f.get('lastAt'))}"
        return [TimelineEvent(at, "heartbeat", detail)]
    if ev.kind in _RETRIES:
        out = [TimelineEvent(at, ev.kind, _retry_detail(ev))]
        if ev.dead_lettered:
            out.append(TimelineEvent(at, "dead_lettered", "dead-lettered: MAX_ATTEMPTS"))
        return out
    if ev.kind == "result":
        detail = f"worker reported {f.get('status')}"
        if f.get("error"):
            detail += f": {f['error']}"
        return [TimelineEvent(at, "result", detail)]
    if ev.kind in ("cancelled", "replayed"):
        return [TimelineEvent(at, ev.kind, f"{ev.kind} by {f.get('by') or '?'}")]
    if ev.kind == "promoted":
        return [TimelineEvent(at, "promoted", "delay over: ready to claim")]
    if ev.kind == "callback":
        status = f.get("httpStatus") or "no response"
        detail = f"callback attempt {f.get('attempt')}: HTTP {status}, {f.get('outcome')}"
        if f.get("error"):
            detail += f": {f['error']}"
        return [TimelineEvent(at, "callback", detail)]
    return [TimelineEvent(at, ev.kind, "")]


async def task_timeline(
    store: Store, tenant: str, meta: Meta, result: dict[str, Any] | None
) -> Timeline:
    """The task's events, oldest first: the recorded ones, or (a task written before
    the store kept events) those its record implies."""
    recorded = await store.task_events(tenant, str(meta.get("id", "")))
    # Only ``created`` (from the record) while the record says more happened: a task
    # written before the store kept events.
    legacy = len(recorded) <= 1 and (meta.get("attempts") or meta.get("status") != "PENDING")
    if not recorded or legacy:
        return reconstruct(meta, result)
    events = [t for ev in recorded for t in _recorded(ev)]
    return Timeline(events, reconstructed=False, truncated=len(recorded) > EVENTS_MAX)


def reconstruct(meta: Meta, result: dict[str, Any] | None) -> Timeline:
    """The timeline a task record implies (no recorded events)."""
    events = [TimelineEvent(_at(meta.get("createdAt")), "created", "task created")]
    attempts = int(meta.get("attempts") or 0)
    status = meta.get("status")
    if attempts:
        who = meta.get("workerId") or "?"
        lease = meta.get("leaseId")
        earlier = f" ({attempts - 1} earlier claim(s) not recorded)" if attempts > 1 else ""
        events.append(
            TimelineEvent(
                _at(meta.get("claimedAt")),
                "claimed",
                f"attempt {attempts} by worker {who}"
                + (f", lease {lease}" if lease and status == "IN_PROGRESS" else "")
                + earlier,
            )
        )
    if status == "PENDING" and attempts and meta.get("error"):
        events.append(
            TimelineEvent(
                _at(meta.get("updatedAt")),
                "retry",
                f"requeued after: {meta['error']}; runs again at {_at(meta.get('runAt'))}",
            )
        )
    if meta.get("deadLettered"):
        events.append(
            TimelineEvent(
                _at(meta.get("updatedAt")),
                "dead_lettered",
                f"dead-lettered: {meta.get('error') or 'FAILED'}",
            )
        )
    elif status == "CANCELLED":
        events.append(TimelineEvent(_at(meta.get("updatedAt")), "cancelled", "cancelled"))
    elif result is not None and status in ("COMPLETED", "FAILED"):
        detail = f"worker reported {result.get('status', status)}"
        if result.get("error"):
            detail += f": {result['error']}"
        events.append(TimelineEvent(result.get("completedAt"), "result", detail))
    if meta.get("webhook") and status in ("COMPLETED", "FAILED", "CANCELLED"):
        state = meta.get("webhookStatus", "PENDING")
        detail = f"callback {state} after {meta.get('webhookAttempts', 0)} attempt(s)"
        if meta.get("webhookError"):
            detail += f": {meta['webhookError']}"
        events.append(TimelineEvent(_at(meta.get("webhookUpdatedAt")), "callback", detail))
    return Timeline(events, reconstructed=True)
