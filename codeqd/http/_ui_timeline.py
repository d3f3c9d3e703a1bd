"""A task's timeline for the dashboard, behind one function: ``task_timeline``.

Today the store keeps no event list per task, so the timeline is *reconstructed* from
what the task record holds (created, the latest claim, the last error, the result, the
callback's progress, cancel); intermediate claims, heartbeats and earlier nacks are
not known. When the store keeps a bounded event list per task (issue 18), this
function reads it instead and its callers do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def _at(ms: Any) -> str | None:
    return rfc3339(ms) if isinstance(ms, int | float) and ms > 0 else None


async def task_timeline(
    store: Store, tenant: str, meta: Meta, result: dict[str, Any] | None
) -> Timeline:
    """The task's events, oldest first. ``store`` and ``tenant`` are where the recorded
    event list will be read from; unused while the timeline is reconstructed."""
    del store, tenant
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
