"""The task state machine: the states, the transitions between them, and the refusals.

This is the single statement of what the store's Lua scripts (``codeqd/store/lua``)
do to a task's ``status``; a unit test reads every script and checks that each status
it compares or sets and each code it returns is declared here, and that each refusal
renders as the HTTP error written in ``REFUSALS``.

::

    (new) --create--> PENDING --claim--> IN_PROGRESS --result--> COMPLETED | FAILED
                      ^  |  ^                |
          promote ----+  |  +-- nack/abandon/release/expire (FAILED when attempts run out)
                         |                   |
                         +------ cancel -----+--> CANCELLED
    FAILED (dead-lettered) --replay--> PENDING;  --purge--> (deleted)
    COMPLETED | FAILED | CANCELLED --cleanup (retention)--> (deleted)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from codeqd.domain.errors import (
    CodeqError,
    Conflict,
    Forbidden,
    InvalidState,
    LeaseLost,
    TaskNotFound,
)

Status = Literal["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"]
PENDING: Status = "PENDING"
IN_PROGRESS: Status = "IN_PROGRESS"
COMPLETED: Status = "COMPLETED"
FAILED: Status = "FAILED"
CANCELLED: Status = "CANCELLED"
STATUSES: tuple[Status, ...] = (PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED)
TERMINAL: frozenset[Status] = frozenset({COMPLETED, FAILED, CANCELLED})
#: The ``error`` of a task dead-lettered because its attempts ran out.
MAX_ATTEMPTS_ERROR = "MAX_ATTEMPTS"

#: A terminal task's result callback (``webhookStatus``), a machine of its own.
WEBHOOK_STATUSES = ("PENDING", "RETRYING", "DELIVERED", "FAILED")

#: A transition applied: ``OK`` (with the task), a retry's ``REQUEUED`` (with the
#: delay) or ``DEAD`` (dead-lettered); ``LIMIT`` (a subscription limit, with its scope)
#: and ``STALE`` (an outbox entry already settled) belong to the store's other scripts.
OUTCOMES = ("OK", "REQUEUED", "DEAD", "LIMIT", "STALE")


@dataclass(frozen=True)
class Refusal:
    """A code a script returns instead of applying a transition, and the error the
    client gets for it (``status`` and ``code`` of the JSON error)."""

    status: int
    code: str
    meaning: str


REFUSALS: dict[str, Refusal] = {
    "NOT_FOUND": Refusal(404, "task_not_found", "no such task (or another tenant's)"),
    "NOT_IN_PROGRESS": Refusal(409, "invalid_state", "the task is not IN_PROGRESS"),
    # 403, as codeQ answers a worker that is not the lease holder.
    "NOT_OWNER": Refusal(403, "not_lease_holder", "another worker holds the lease"),
    "LEASE_LOST": Refusal(409, "lease_lost", "the leaseId sent is not the current one"),
    "LEASE_EXPIRED": Refusal(409, "lease_expired", "the lease ran out before the call"),
    "TERMINAL": Refusal(409, "already_terminal", "the task is already terminal"),
    # Only the reaper meets it (the lease was renewed or the task settled meanwhile),
    # and it skips the task: never a client's answer.
    "NOT_EXPIRED": Refusal(409, "conflict", "the lease has not expired"),
}

_OWNER_CHECKS = ("NOT_FOUND", "NOT_IN_PROGRESS", "NOT_OWNER", "LEASE_LOST", "LEASE_EXPIRED")


@dataclass(frozen=True)
class Transition:
    """``name`` moves a task from one of ``sources`` to one of ``targets`` (None: no
    task, before create or after a delete), in one call of one of ``scripts``, or is
    refused with one of ``refusals``."""

    name: str
    sources: frozenset[Status | None]
    targets: frozenset[Status | None]
    scripts: tuple[str, ...]
    refusals: tuple[str, ...] = ()


def _t(
    name: str,
    sources: tuple[Status | None, ...],
    targets: tuple[Status | None, ...],
    scripts: tuple[str, ...],
    refusals: tuple[str, ...] = (),
) -> Transition:
    return Transition(name, frozenset(sources), frozenset(targets), scripts, refusals)


TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        _t("create", (None,), (PENDING,), ("create", "create_batch")),
        # A claim takes only PENDING tasks that are ready; it has no refusal, only
        # fewer tasks.
        _t("claim", (PENDING,), (IN_PROGRESS,), ("claim",)),
        _t("heartbeat", (IN_PROGRESS,), (IN_PROGRESS,), ("heartbeat",), _OWNER_CHECKS),
        _t("nack", (IN_PROGRESS,), (PENDING, FAILED), ("retry",), _OWNER_CHECKS),
        _t("abandon", (IN_PROGRESS,), (PENDING,), ("retry",), _OWNER_CHECKS),
        # A claim that never reached its worker; the lease need not be current.
        _t("release", (IN_PROGRESS,), (PENDING,), ("retry",), _OWNER_CHECKS[:-1]),
        _t(
            "result",
            (IN_PROGRESS,),
            (COMPLETED, FAILED),
            ("result", "result_batch"),
            _OWNER_CHECKS,
        ),
        _t(
            "expire",
            (IN_PROGRESS,),
            (PENDING, FAILED),
            ("retry",),
            ("NOT_FOUND", "NOT_IN_PROGRESS", "NOT_EXPIRED"),
        ),
        # A delayed PENDING task becomes ready (it stays PENDING).
        _t("promote", (PENDING,), (PENDING,), ("promote",)),
        _t("cancel", (PENDING, IN_PROGRESS), (CANCELLED,), ("cancel",), ("NOT_FOUND", "TERMINAL")),
        # replay and purge take dead-lettered tasks (FAILED, deadLettered) by id; an id
        # that is not in the dead-letter queue is reported missing, not refused.
        _t("replay", (FAILED,), (PENDING,), ("replay",)),
        _t("purge", (FAILED,), (None,), ("purge",)),
        _t("cleanup", (COMPLETED, FAILED, CANCELLED), (None,), ("cleanup",)),
    )
}


def can(transition: str, status: Status | None) -> bool:
    """Whether ``transition`` applies to a task in ``status`` (None: no task)."""
    return status in TRANSITIONS[transition].sources


def refusal_error(code: str, task_id: str, extra: list[Any]) -> CodeqError:
    """The error for a script's refusal ``code`` on ``task_id``; ``extra`` is the rest
    of the script's answer (the task's status for NOT_IN_PROGRESS and TERMINAL)."""
    if code == "NOT_FOUND":
        return TaskNotFound(task_id)
    if code == "NOT_IN_PROGRESS":
        status = extra[0] if extra else "unknown"
        if status in TERMINAL:
            return InvalidState(f"task {task_id} is already {status}", status=status)
        return InvalidState(f"task {task_id} is {status}, not IN_PROGRESS", status=status)
    if code == "NOT_OWNER":
        return Forbidden(f"task {task_id} is leased by another worker", code="not_lease_holder")
    if code == "LEASE_LOST":
        return LeaseLost(f"lease on task {task_id} was lost (it was claimed again)")
    if code == "LEASE_EXPIRED":
        return LeaseLost(
            f"lease on task {task_id} expired; the task will be retried", code="lease_expired"
        )
    if code == "TERMINAL":
        return Conflict(f"task {task_id} is already {extra[0]}", code="already_terminal")
    return Conflict(f"task {task_id}: {code}")
