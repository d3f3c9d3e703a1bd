"""Typed views of the wire objects (SPEC §1): Task, Result, and what calls send and get.

Parsing is lenient on purpose: fields this client does not know are kept in
``extra`` (and the whole object in ``raw``), timestamps that do not parse are
left as ``None`` with the text kept in ``raw``, so a newer daemon — or the Go
codeQ service — never breaks an older client.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

TaskStatus = Literal["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"]
ResultStatus = Literal["COMPLETED", "FAILED", "CANCELLED"]

#: Statuses after which a task never changes again.
TERMINAL_STATUSES: frozenset[str] = frozenset({"COMPLETED", "FAILED", "CANCELLED"})

_FRACTION = re.compile(r"(\.\d+)")


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime; ``None`` when absent or unparsable.

    Accepts ``Z`` and numeric offsets and any number of fraction digits (the Go
    service sends nanoseconds; ``datetime`` keeps microseconds).
    """
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: (m.group(1) + "000000")[:7], text, count=1)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, the form the daemon itself writes."""
    if value.tzinfo is None:
        raise ValueError("datetime needs a timezone (e.g. datetime.now(UTC))")
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def _str(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) else None


def _int(doc: Mapping[str, Any], key: str, default: int | None = None) -> int | None:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return int(value)


def _extra(doc: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in known}


_TASK_FIELDS = frozenset(
    {
        "id",
        "command",
        "payload",
        "priority",
        "status",
        "attempts",
        "maxAttempts",
        "workerId",
        "leaseId",
        "leaseUntil",
        "runAt",
        "webhook",
        "idempotencyKey",
        "tenantId",
        "error",
        "createdAt",
        "updatedAt",
        "deadLettered",
        "resultKey",
        "traceParent",
        "traceState",
    }
)


@dataclass(frozen=True, kw_only=True)
class Task:
    """A task as the daemon last described it (a snapshot; it does not update itself).

    ``lease_id`` is set on a task you claimed: the fencing token the
    :class:`~codeqd_client.WorkerClient` sends back on every call about it.
    """

    id: str
    command: str
    #: Any JSON value but null, as it was sent (an object, usually).
    payload: Any
    status: TaskStatus
    priority: int = 0
    attempts: int = 0
    max_attempts: int | None = None
    worker_id: str | None = None
    lease_id: str | None = None
    lease_until: datetime | None = None
    run_at: datetime | None = None
    webhook: str | None = None
    idempotency_key: str | None = None
    tenant_id: str | None = None
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    dead_lettered: bool = False
    #: Set once the task's result is stored (opaque, as in codeQ).
    result_key: str | None = None
    #: The W3C trace context its create request carried (``traceparent``/``tracestate``).
    trace_parent: str | None = None
    trace_state: str | None = None
    #: Fields this client does not know, as sent.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The whole object as sent (what :meth:`to_wire` returns).
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """True once the task is terminal (COMPLETED, FAILED or CANCELLED)."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> Task:
        task_id, command = doc.get("id"), doc.get("command")
        if not isinstance(task_id, str) or not isinstance(command, str):
            raise ValueError("a task needs string 'id' and 'command' fields")
        payload = doc.get("payload")
        return cls(
            id=task_id,
            command=command,
            payload=dict(payload)
            if isinstance(payload, Mapping)
            else ({} if payload is None else payload),
            status=_str(doc, "status") or "PENDING",  # type: ignore[arg-type]
            priority=_int(doc, "priority", 0) or 0,
            attempts=_int(doc, "attempts", 0) or 0,
            max_attempts=_int(doc, "maxAttempts"),
            worker_id=_str(doc, "workerId"),
            lease_id=_str(doc, "leaseId"),
            lease_until=parse_time(doc.get("leaseUntil")),
            run_at=parse_time(doc.get("runAt")),
            webhook=_str(doc, "webhook"),
            idempotency_key=_str(doc, "idempotencyKey"),
            tenant_id=_str(doc, "tenantId"),
            error=_str(doc, "error"),
            created_at=parse_time(doc.get("createdAt")),
            updated_at=parse_time(doc.get("updatedAt")),
            dead_lettered=doc.get("deadLettered") is True,
            result_key=_str(doc, "resultKey"),
            trace_parent=_str(doc, "traceParent"),
            trace_state=_str(doc, "traceState"),
            extra=_extra(doc, _TASK_FIELDS),
            raw=dict(doc),
        )

    def to_wire(self) -> dict[str, Any]:
        """The task as JSON-ready camelCase, exactly as the daemon sent it."""
        return (
            dict(self.raw)
            if self.raw
            else {
                "id": self.id,
                "command": self.command,
                "payload": self.payload,
                "status": self.status,
                "priority": self.priority,
                "attempts": self.attempts,
                **self.extra,
            }
        )


@dataclass(frozen=True, kw_only=True)
class Artifact:
    """A named output of a task: a link (``url``), or content codeqd stores with the
    result (``Artifact.inline``) and serves back at a URL of the task."""

    name: str
    url: str
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> Artifact:
        return cls(
            name=_str(doc, "name") or "",
            url=_str(doc, "url") or "",
            extra=_extra(doc, frozenset({"name", "url"})),
        )

    @classmethod
    def inline(
        cls, name: str, content: bytes, content_type: str = "application/octet-stream"
    ) -> Artifact:
        """Content up to the server's ``limits.artifact_bytes``, sent base64-encoded."""
        encoded = base64.b64encode(content).decode()
        return cls(name=name, url="", extra={"contentBase64": encoded, "contentType": content_type})

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, **self.extra}
        if self.url:
            out["url"] = self.url
        return out


_RESULT_FIELDS = frozenset({"taskId", "status", "result", "error", "artifacts", "completedAt"})


@dataclass(frozen=True, kw_only=True)
class Result:
    """A terminal task's outcome: ``result`` for COMPLETED, ``error`` otherwise."""

    task_id: str
    status: ResultStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    completed_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "COMPLETED"

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> Result:
        result = doc.get("result")
        artifacts = doc.get("artifacts")
        return cls(
            task_id=_str(doc, "taskId") or "",
            status=_str(doc, "status") or "COMPLETED",  # type: ignore[arg-type]
            result=dict(result) if isinstance(result, Mapping) else None,
            error=_str(doc, "error"),
            artifacts=[Artifact.from_wire(a) for a in artifacts if isinstance(a, Mapping)]
            if isinstance(artifacts, list)
            else [],
            completed_at=parse_time(doc.get("completedAt")),
            extra=_extra(doc, _RESULT_FIELDS),
            raw=dict(doc),
        )


@dataclass(frozen=True, kw_only=True)
class TaskResult:
    """``GET /tasks/:id/result``: the task, and its result once it is terminal
    (``result`` is None while it is not: the daemon's 404 ``result_not_found``)."""

    task: Task
    result: Result | None

    @property
    def done(self) -> bool:
        return self.task.done

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> TaskResult:
        task, result = doc.get("task"), doc.get("result")
        if not isinstance(task, Mapping):
            raise ValueError("a result answer needs a 'task' object")
        return cls(
            task=Task.from_wire(task),
            result=Result.from_wire(result) if isinstance(result, Mapping) else None,
        )


@dataclass(frozen=True, kw_only=True)
class NackOutcome:
    """What a nack did: requeued after ``delay_seconds``, or dead-lettered (attempts
    spent; the daemon answers ``{"status": "dlq", "delaySeconds": 0}``, as codeQ does)."""

    status: Literal["requeued", "dead_lettered"]
    delay_seconds: int | None = None

    @property
    def dead_lettered(self) -> bool:
        return self.status == "dead_lettered"

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> NackOutcome:
        delay = _int(doc, "delaySeconds")
        # "dlq": codeQ's answer and codeqd's; "dead_lettered": codeqd before 0.2.
        if doc.get("status") in ("dlq", "dead_lettered"):
            return cls(status="dead_lettered", delay_seconds=delay)
        return cls(status="requeued", delay_seconds=delay)


@dataclass(frozen=True, kw_only=True)
class NewTask:
    """A task to create; ``create_many`` takes a list of these (or plain dicts).

    ``run_at`` wins over ``delay`` when both are given (SPEC §2). ``delay`` is
    whole seconds on the wire; fractions are rounded up so a task never runs early.
    """

    command: str
    #: Any JSON value but null (an object, usually).
    payload: Any = field(default_factory=dict)
    priority: int | None = None
    max_attempts: int | None = None
    webhook: str | None = None
    idempotency_key: str | None = None
    run_at: datetime | str | None = None
    delay: float | timedelta | None = None
    #: Extra fields sent as they are (extensions this client does not model).
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        payload = dict(self.payload) if isinstance(self.payload, Mapping) else self.payload
        body: dict[str, Any] = {"command": self.command, "payload": payload}
        if self.priority is not None:
            body["priority"] = self.priority
        if self.max_attempts is not None:
            body["maxAttempts"] = self.max_attempts
        if self.webhook is not None:
            body["webhook"] = self.webhook
        if self.idempotency_key is not None:
            body["idempotencyKey"] = self.idempotency_key
        if self.run_at is not None:
            body["runAt"] = (
                format_time(self.run_at) if isinstance(self.run_at, datetime) else self.run_at
            )
        if self.delay is not None:
            seconds = (
                self.delay.total_seconds()
                if isinstance(self.delay, timedelta)
                else float(self.delay)
            )
            body["delaySeconds"] = max(0, math.ceil(seconds))
        body.update(self.extra)
        return body

    @classmethod
    def coerce(cls, value: NewTask | Mapping[str, Any]) -> NewTask:
        """A ``NewTask`` from itself or from a wire-form dict (``{"command", "payload", ...}``)."""
        if isinstance(value, NewTask):
            return value
        known = {
            "command",
            "payload",
            "priority",
            "maxAttempts",
            "webhook",
            "idempotencyKey",
            "runAt",
            "delaySeconds",
        }
        command = value.get("command")
        if not isinstance(command, str):
            raise ValueError("a task needs a 'command' string")
        return cls(
            command=command,
            payload={} if value.get("payload") is None else value["payload"],
            priority=value.get("priority"),
            max_attempts=value.get("maxAttempts"),
            webhook=value.get("webhook"),
            idempotency_key=value.get("idempotencyKey"),
            run_at=value.get("runAt"),
            delay=value.get("delaySeconds"),
            extra={k: v for k, v in value.items() if k not in known},
        )
