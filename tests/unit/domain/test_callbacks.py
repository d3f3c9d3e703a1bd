"""Result callbacks: the body, the delivery lease and the retry backoff."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from codeqd.domain.callbacks import backoff_seconds, callback_body, lease_ms


@pytest.mark.parametrize(
    ("timeout", "ms"), [(0.5, 1_000), (1, 2_000), (5, 10_000), (10, 15_000), (30, 35_000)]
)
def test_lease_is_timeout_plus_at_most_5s(timeout: float, ms: int) -> None:
    assert lease_ms(timeout) == ms


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_seconds(1, 10, n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert backoff_seconds(0.5, 60, 1) == 0.5


def body(meta: dict[str, Any], result: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(callback_body(meta, result))
    return out


def test_the_stored_result_is_sent() -> None:
    meta = {"id": "t-1", "command": "email", "status": "COMPLETED"}
    result = {
        "status": "COMPLETED",
        "result": {"sent": True},
        "error": None,
        "artifacts": [{"name": "log", "url": "https://x/log"}],
        "completedAt": "2026-01-01T00:00:00.000Z",
    }
    # A field with no value is left out, never null (codeQ's omitempty).
    assert body(meta, result) == {
        "taskId": "t-1",
        "eventType": "email",
        "status": "COMPLETED",
        "result": {"sent": True},
        "artifacts": [{"name": "log", "url": "https://x/log"}],
        "completedAt": "2026-01-01T00:00:00.000Z",
    }


def test_a_task_ended_without_a_report_gets_a_synthesized_result() -> None:
    meta: dict[str, Any] = {"id": "t-1", "command": "email", "status": "FAILED"}
    meta |= {"error": "MAX_ATTEMPTS", "updatedAt": 1_000}
    # A stale result (of an earlier status) is not this outcome's.
    stale = {"status": "COMPLETED", "result": {"x": 1}}
    for result in (None, stale):
        assert body(meta, result) == {
            "taskId": "t-1",
            "eventType": "email",
            "status": "FAILED",
            "error": "MAX_ATTEMPTS",
            "artifacts": [],
            "completedAt": "1970-01-01T00:00:01.000Z",
        }


def test_cancelled_without_error_names_the_status() -> None:
    out = body({"id": "t-1", "command": "c", "status": "CANCELLED"}, None)
    assert out["error"] == "CANCELLED"
