"""A new task's metadata, a Result document and a queue's counts on the wire."""

from __future__ import annotations

import dataclasses

from codeqd.domain.records import new_meta, queue_stats_wire, result_doc
from codeqd.domain.task import NewTask


def task(webhook: str | None = None, key: str | None = None) -> NewTask:
    return NewTask("email", b'{"to":"a"}', 3, 5, 2_000, webhook, key)


def test_a_new_task_is_pending_with_no_attempts() -> None:
    assert new_meta("t-1", "acme", task(), 1_000) == {
        "id": "t-1",
        "command": "email",
        "priority": 3,
        "status": "PENDING",
        "attempts": 0,
        "maxAttempts": 5,
        "runAt": 2_000,
        "tenantId": "acme",
        "createdAt": 1_000,
        "updatedAt": 1_000,
    }


def test_webhook_and_idempotency_key_only_when_given() -> None:
    meta = new_meta("t-1", "acme", task("https://cb.example/x", "k-1"), 1)
    assert (meta["webhook"], meta["idempotencyKey"]) == ("https://cb.example/x", "k-1")
    assert "webhook" not in new_meta("t-1", "acme", task(webhook=""), 1)
    # An empty idempotency key is a key (it was sent); no key is no key.
    assert new_meta("t-1", "acme", task(key=""), 1)["idempotencyKey"] == ""
    assert "idempotencyKey" not in new_meta("t-1", "acme", task(), 1)


def test_result_doc_renders_completion_time() -> None:
    doc = result_doc("t-1", "COMPLETED", {"ok": 1}, None, [{"name": "a", "url": "u"}], 1_500)
    assert doc == {
        "taskId": "t-1",
        "status": "COMPLETED",
        "result": {"ok": 1},
        "artifacts": [{"name": "a", "url": "u"}],
        "completedAt": "1970-01-01T00:00:01.500Z",
    }


def test_result_doc_leaves_out_what_has_no_value() -> None:
    assert result_doc("t-1", "FAILED", None, "boom", [], 1_000) == {
        "taskId": "t-1",
        "status": "FAILED",
        "error": "boom",
        "artifacts": [],
        "completedAt": "1970-01-01T00:00:01.000Z",
    }


def test_new_meta_keeps_the_trace_context() -> None:
    traced = dataclasses.replace(
        task(), trace_parent="00-" + "a" * 32 + "-" + "b" * 16 + "-01", trace_state="k=v"
    )
    meta = new_meta("t-1", "acme", traced, 1_000)
    assert (meta["traceParent"], meta["traceState"]) == (traced.trace_parent, "k=v")
    assert "traceParent" not in new_meta("t-1", "acme", task(), 1_000)


def test_queue_stats_wire_names() -> None:
    assert queue_stats_wire("email", 1, 2, 3, 4, True) == {
        "command": "email",
        "ready": 1,
        "delayed": 2,
        "inProgress": 3,
        "dlq": 4,
        "paused": True,
    }
