"""A task's recorded events (the store's bounded per-task list, issue 18).

The store's scripts append each event, in the same atomic step as the transition, as a
short JSON array: its kind, its time (ms since the epoch), then the fields of that kind,
in the order ``FIELDS`` gives. ``parse_event`` turns one into a ``TaskEvent``. The list
holds only what the task record cannot tell: ``created``, a first claim and the worker's
result are read from the record while there is no list (``told_events``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from codeqd.domain.task import has_result

#: Per kind, the names of the fields after (kind, time), as ``lua/*.lua`` write them.
FIELDS: dict[str, tuple[str, ...]] = {
    # The creating token's sub. Not in the list: the task record holds it
    # (``createdBy``, ``createdAt``) and ``Store.task_events`` puts it first.
    "created": ("by",),
    "promoted": (),  # a delayed task became ready
    "claimed": ("worker", "leaseId", "attempt"),
    # Consecutive heartbeats are one event, updated in place.
    "heartbeat": ("lastAt", "count"),
    # nack, abandon, release (a claim that never reached its worker) and lease expiry:
    # the lease holder, its lease, the reason, and the delay before the task can be
    # claimed again (ms; -1: dead-lettered).
    "nacked": ("worker", "leaseId", "reason", "delayMs"),
    "abandoned": ("worker", "leaseId", "reason", "delayMs"),
    "released": ("worker", "leaseId", "reason", "delayMs"),
    "expired": ("worker", "leaseId", "reason", "delayMs"),
    "result": ("status", "error"),
    "cancelled": ("by",),
    "replayed": ("by",),
    # One result-callback attempt: its number, the HTTP status (0: no response), the
    # callback's status after it (DELIVERED, RETRYING, FAILED) and the error.
    "callback": ("attempt", "httpStatus", "outcome", "error"),
}
#: How many events a task keeps (the oldest are dropped): ``EVENTS_MAX`` in _lib.lua.
EVENTS_MAX = 50


@dataclass(frozen=True)
class TaskEvent:
    kind: str
    at: int  # ms since the epoch
    fields: dict[str, Any]

    @property
    def dead_lettered(self) -> bool:
        return self.fields.get("delayMs") == -1


def parse_event(raw: str | bytes) -> TaskEvent | None:
    """One stored event; None for one this version cannot read (skipped, not fatal)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, list) or len(doc) < 2 or not isinstance(doc[0], str):
        return None
    kind, at = doc[0], doc[1]
    if not isinstance(at, int | float):
        return None
    names = FIELDS.get(kind, ())
    return TaskEvent(kind, int(at), dict(zip(names, doc[2:], strict=False)))


def told_events(meta: dict[str, Any]) -> list[TaskEvent]:
    """The events a task record tells while the task has no list (``told`` in
    lua/_lib.lua): its first claim, and its worker's result. A task created, claimed once
    and finished by its worker keeps no list; any other event starts one, with these
    first. A record that shows more than that (a later attempt, a cancel, a dead letter)
    and no list was written before the store kept events: nothing is told (the dashboard
    reconstructs such a task's timeline from its record, and says so)."""
    first_claim = meta.get("claimedAt") is not None and meta.get("attempts") == 1
    told_state = meta.get("status") == "IN_PROGRESS" or has_result(meta)
    if not (first_claim and told_state) or meta.get("webhookAttempts"):
        return []
    out = [
        TaskEvent(
            "claimed",
            int(meta["claimedAt"]),
            {
                "worker": meta.get("workerId") or "",
                "leaseId": meta.get("leaseId") or "",
                "attempt": 1,
            },
        )
    ]
    if has_result(meta):
        out.append(
            TaskEvent(
                "result",
                int(meta.get("updatedAt") or 0),
                {"status": meta["status"], "error": meta.get("error") or ""},
            )
        )
    return out
