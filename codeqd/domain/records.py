"""What the store keeps about a task, decided here and written by its scripts: a new
task's metadata, a worker's Result document, and a queue's counts on the wire."""

from __future__ import annotations

from typing import Any

from codeqd.domain.states import PENDING
from codeqd.domain.task import NewTask, rfc3339

Meta = dict[str, Any]


def new_meta(task_id: str, tenant: str, task: NewTask, now: int) -> Meta:
    """A new task's metadata as the create scripts store it."""
    meta: Meta = {
        "id": task_id,
        "command": task.command,
        "priority": task.priority,
        "status": PENDING,
        "attempts": 0,
        "maxAttempts": task.max_attempts,
        "runAt": task.run_at_ms,
        "tenantId": tenant,
        "createdAt": now,
        "updatedAt": now,
    }
    if task.created_by:
        # The task's ``created`` event (codeqd.domain.events): kept in the record, not in
        # an event list, so that a pending task costs no list key until its first claim.
        meta["createdBy"] = task.created_by
    if task.webhook:
        meta["webhook"] = task.webhook
    if task.idempotency_key is not None:
        meta["idempotencyKey"] = task.idempotency_key
    if task.trace_parent:
        meta["traceParent"] = task.trace_parent
        if task.trace_state:
            meta["traceState"] = task.trace_state
    return meta


def result_doc(
    task_id: str,
    status: str,
    result: dict[str, Any] | None,
    error: str | None,
    artifacts: list[dict[str, Any]],
    now: int,
) -> dict[str, Any]:
    """The SPEC Result a worker's report stores; ``result`` and ``error`` are left out
    when they have no value (never ``null``, as in codeQ)."""
    doc: dict[str, Any] = {"taskId": task_id, "status": status}
    if result is not None:
        doc["result"] = result
    if error is not None:
        doc["error"] = error
    doc["artifacts"] = artifacts
    doc["completedAt"] = rfc3339(now)
    return doc


def queue_stats_wire(
    command: str, ready: int, delayed: int, in_progress: int, dlq: int, paused: bool
) -> dict[str, Any]:
    """One queue's counts as ``GET /admin/queues`` renders them."""
    return {
        "command": command,
        "ready": ready,
        "delayed": delayed,
        "inProgress": in_progress,
        "dlq": dlq,
        "paused": paused,
    }
