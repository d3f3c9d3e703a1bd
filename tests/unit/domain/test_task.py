"""Tasks on the wire: waits clamped as codeQ does, payloads of any JSON value but null,
optional fields left out, and the resultKey of a task whose result is stored."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from codeqd.domain.errors import ValidationError
from codeqd.domain.task import (
    MAX_RESULT_WAIT_SECONDS,
    MAX_WAIT_SECONDS,
    get_wait,
    parse_new_task,
    result_to_wire,
    synthesized_result,
    task_to_wire,
)


@pytest.mark.parametrize(
    ("value", "longest", "wait"),
    [
        (None, 30, 0),
        (0, 30, 0),
        (5, 30, 5),
        (30, 30, 30),
        (31, MAX_WAIT_SECONDS, 30),
        (10**12, MAX_WAIT_SECONDS, 30),
        (2.0, 30, 2),
    ],
)
def test_a_long_wait_is_clamped_not_refused(value: Any, longest: int, wait: int) -> None:
    assert get_wait(value, "waitSeconds", longest) == wait


@pytest.mark.parametrize(
    ("value", "wait"), [(None, 0), ("", 0), ("0", 0), ("61", 60), ("3600", 60), ("7", 7)]
)
def test_a_query_wait_is_clamped_to_60(value: str | None, wait: int) -> None:
    assert get_wait(value, "waitSeconds", MAX_RESULT_WAIT_SECONDS, query=True) == wait


@pytest.mark.parametrize(
    ("value", "query"),
    [
        (-1, False),
        ("5", False),  # a JSON body's wait is a number, not text
        (1.5, False),
        (True, False),
        ([1], False),
        ("-1", True),
        ("soon", True),
        ("1.5", True),
    ],
)
def test_a_wait_that_is_no_whole_number_of_seconds_is_refused(value: Any, query: bool) -> None:
    with pytest.raises(ValidationError) as e:
        get_wait(value, "waitSeconds", 30, query=query)
    assert e.value.field == "waitSeconds"


def parse(payload: Any) -> bytes:
    task = parse_new_task(
        {"command": "c", "payload": payload}, now_ms=0, default_max_attempts=5, max_depth=4
    )
    return task.payload


@pytest.mark.parametrize("payload", ["text", "", 0, -2.5, True, False, [], [1, "a"], {}, {"a": 1}])
def test_any_json_payload_but_null_is_kept_as_sent(payload: Any) -> None:
    assert orjson.loads(parse(payload)) == payload


def test_a_null_payload_and_a_too_deep_one_are_refused() -> None:
    with pytest.raises(ValidationError, match="payload: must not be null"):
        parse(None)
    with pytest.raises(ValidationError, match="payload: nested deeper than 4"):
        parse([[[[["deep"]]]]])


META: dict[str, Any] = {
    "id": "t-1",
    "command": "c",
    "priority": 0,
    "status": "PENDING",
    "attempts": 0,
    "maxAttempts": 5,
    "tenantId": "acme",
    "runAt": 1_000,
    "createdAt": 1_000,
    "updatedAt": 1_000,
}


def wire(**meta: Any) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(orjson.dumps(task_to_wire(META | meta, b'"x"')))
    return out


def test_optional_fields_without_a_value_are_left_out() -> None:
    assert wire(workerId=None, error=None, webhook=None, leaseUntil=None) == {
        "id": "t-1",
        "command": "c",
        "payload": "x",
        "priority": 0,
        "status": "PENDING",
        "attempts": 0,
        "maxAttempts": 5,
        "tenantId": "acme",
        "runAt": "1970-01-01T00:00:01.000Z",
        "createdAt": "1970-01-01T00:00:01.000Z",
        "updatedAt": "1970-01-01T00:00:01.000Z",
    }


@pytest.mark.parametrize(
    ("meta", "has_key"),
    [
        ({"status": "PENDING"}, False),
        ({"status": "IN_PROGRESS"}, False),
        ({"status": "COMPLETED"}, True),
        ({"status": "FAILED", "error": "boom"}, True),  # the worker reported it
        ({"status": "FAILED", "error": "MAX_ATTEMPTS", "deadLettered": True}, False),
        ({"status": "CANCELLED"}, False),
    ],
)
def test_result_key_once_a_result_is_stored(meta: dict[str, Any], has_key: bool) -> None:
    out = wire(**meta)
    assert out.get("resultKey") == ("result:t-1" if has_key else None)


def test_trace_context_is_returned_with_the_task() -> None:
    parent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    out = wire(traceParent=parent, traceState="k=v")
    assert (out["traceParent"], out["traceState"]) == (parent, "k=v")


def test_a_synthesized_result_has_no_null() -> None:
    meta = META | {"status": "CANCELLED"}
    assert synthesized_result(meta) == {
        "taskId": "t-1",
        "status": "CANCELLED",
        "error": "CANCELLED",
        "artifacts": [],
        "completedAt": "1970-01-01T00:00:01.000Z",
    }


def test_a_result_stored_with_nulls_is_sent_without_them() -> None:
    old = '{"taskId":"t","status":"COMPLETED","result":{"a":null},"error":null,"artifacts":[]}'
    assert orjson.loads(orjson.dumps(result_to_wire(old))) == {
        "taskId": "t",
        "status": "COMPLETED",
        "result": {"a": None},  # the worker's own nulls are its data
        "artifacts": [],
    }
    new = '{"taskId":"t","status":"COMPLETED","result":{"a":1},"artifacts":[]}'
    assert orjson.dumps(result_to_wire(new)) == new.encode()
