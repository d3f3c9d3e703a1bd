"""Parsing the wire objects: typed fields, unknown fields kept, lenient timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from codeqd.client import NackOutcome, NewTask, Result, Task, TaskResult
from codeqd_client._models import format_time, parse_time

WIRE = {
    "id": "t1",
    "command": "email",
    "payload": {"to": "a"},
    "priority": 2,
    "status": "IN_PROGRESS",
    "attempts": 1,
    "maxAttempts": 5,
    "workerId": "w",
    "leaseId": "abc-0",
    "leaseUntil": "2026-01-02T03:04:05.678Z",
    "createdAt": "2026-01-02T03:04:00.000Z",
    "tenantId": "default",
    "futureField": {"x": 1},
}


def test_task_from_wire_keeps_unknown_fields_and_the_raw_object() -> None:
    task = Task.from_wire(WIRE)
    assert task.id == "t1" and task.lease_id == "abc-0" and task.max_attempts == 5
    assert task.lease_until == datetime(2026, 1, 2, 3, 4, 5, 678000, UTC)
    assert task.extra == {"futureField": {"x": 1}}
    assert task.to_wire() == WIRE
    assert not task.done and task.run_at is None and task.error is None


def test_task_tolerates_odd_values() -> None:
    task = Task.from_wire(
        {
            "id": "t",
            "command": "c",
            "payload": None,
            "status": "NEW_STATE",
            "attempts": "3",
            "leaseUntil": "yesterday",
        }
    )
    assert task.payload == {} and task.attempts == 0 and task.lease_until is None
    assert str(task.status) == "NEW_STATE" and not task.done
    with pytest.raises(ValueError):
        Task.from_wire({"command": "c"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05.123456789Z", datetime(2026, 1, 2, 3, 4, 5, 123456, UTC)),  # Go
        ("2026-01-02T05:04:05.5+02:00", datetime(2026, 1, 2, 3, 4, 5, 500000, UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("not a time", None),
        (None, None),
        (12, None),
    ],
)
def test_parse_time(text: object, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_format_time_needs_a_timezone() -> None:
    assert format_time(datetime(2026, 1, 2, 3, 4, 5, 678901, UTC)) == "2026-01-02T03:04:05.678Z"
    with pytest.raises(ValueError):
        format_time(datetime(2026, 1, 2))


def test_result_and_task_result() -> None:
    doc = {
        "task": {**WIRE, "status": "COMPLETED"},
        "result": {
            "taskId": "t1",
            "status": "COMPLETED",
            "result": {"ok": True},
            "artifacts": [{"name": "log", "url": "http://x/log", "size": 3}],
            "completedAt": "2026-01-02T03:04:06.000Z",
            "extraKey": 1,
        },
    }
    tr = TaskResult.from_wire(doc)
    assert tr.done and tr.result is not None and tr.result.ok
    assert tr.result.artifacts[0].name == "log" and tr.result.artifacts[0].extra == {"size": 3}
    assert tr.result.extra == {"extraKey": 1}
    pending = TaskResult.from_wire({"task": WIRE, "result": None})
    assert not pending.done and pending.result is None
    failed = Result.from_wire({"taskId": "t", "status": "FAILED", "result": None, "error": "x"})
    assert not failed.ok and failed.error == "x"


def test_nack_outcome() -> None:
    assert NackOutcome.from_wire({"status": "requeued", "delaySeconds": 5}).delay_seconds == 5
    assert NackOutcome.from_wire({"status": "dead_lettered"}).dead_lettered
    dlq = NackOutcome.from_wire({"status": "dlq", "delaySeconds": 0})
    assert dlq.dead_lettered and dlq.status == "dead_lettered" and dlq.delay_seconds == 0


def test_any_json_payload_and_the_new_task_fields() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for payload in ("text", 3, [1, 2], False, {"a": 1}):
        task = Task.from_wire(
            {
                "id": "t",
                "command": "c",
                "payload": payload,
                "status": "COMPLETED",
                "resultKey": "result:t",
                "traceParent": parent,
                "traceState": "k=v",
            }
        )
        assert task.payload == payload and task.result_key == "result:t"
        assert (task.trace_parent, task.trace_state, task.extra) == (parent, "k=v", {})
        assert NewTask(command="c", payload=payload).to_wire()["payload"] == payload


def test_new_task_to_wire() -> None:
    spec = NewTask(
        command="c",
        payload={"a": 1},
        priority=3,
        idempotency_key="k",
        run_at=datetime(2026, 1, 1, tzinfo=UTC),
        delay=timedelta(seconds=1.2),
        extra={"x-ext": True},
    )
    assert spec.to_wire() == {
        "command": "c",
        "payload": {"a": 1},
        "priority": 3,
        "idempotencyKey": "k",
        "runAt": "2026-01-01T00:00:00.000Z",
        "delaySeconds": 2,
        "x-ext": True,
    }
    assert NewTask(command="c").to_wire() == {"command": "c", "payload": {}}
    coerced = NewTask.coerce(
        {
            "command": "c",
            "payload": {"b": 2},
            "maxAttempts": 2,
            "delaySeconds": 3,
            "webhook": "http://h/",
            "custom": 1,
        }
    )
    assert coerced.to_wire() == {
        "command": "c",
        "payload": {"b": 2},
        "maxAttempts": 2,
        "webhook": "http://h/",
        "delaySeconds": 3,
        "custom": 1,
    }
    with pytest.raises(ValueError):
        NewTask.coerce({"payload": {}})


def test_inline_artifact_wire_form() -> None:
    from codeqd.client import Artifact

    a = Artifact.inline("out.txt", b"hi", "text/plain")
    assert a.to_wire() == {"name": "out.txt", "contentBase64": "aGk=", "contentType": "text/plain"}
    link = Artifact(name="x", url="https://e/x")
    assert link.to_wire() == {"name": "x", "url": "https://e/x"}
