"""The sans-IO layer: request shapes, leaseId fencing, error mapping, retry decisions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from codeqd.client import (
    BadRequest,
    CodeqError,
    Conflict,
    Forbidden,
    LeaseLost,
    NewTask,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    ServiceUnavailable,
    Task,
    Unauthorized,
)
from codeqd_client import _calls as calls
from codeqd_client._exceptions import error_from_item, error_from_response


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return (
        httpx.Response(status, json=body, headers=headers)
        if body is not None
        else httpx.Response(status, headers=headers)
    )


TASK = {"id": "t1", "command": "c", "payload": {}, "status": "IN_PROGRESS", "leaseId": "L1"}


def test_api_base_and_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert calls.api_base("http://h:1/") == "http://h:1/v1/codeq"
    assert calls.api_base("http://h:1/v1/codeq") == "http://h:1/v1/codeq"
    monkeypatch.setenv("CODEQD_URL", "http://env:2")
    monkeypatch.setenv("CODEQD_TOKEN", "tok")
    assert calls.api_base(None) == "http://env:2/v1/codeq"
    assert calls.auth_headers(None)["Authorization"] == "Bearer tok"
    monkeypatch.delenv("CODEQD_URL")
    monkeypatch.delenv("CODEQD_TOKEN")
    assert calls.api_base(None) == "http://127.0.0.1:8080/v1/codeq"
    assert "Authorization" not in calls.auth_headers(None)


def test_lease_id_goes_in_body_and_header() -> None:
    call = calls.report("t1", "L1", "COMPLETED", result={"x": 1})
    assert call.json == {"status": "COMPLETED", "result": {"x": 1}, "leaseId": "L1"}
    assert call.headers == {"X-Lease-Id": "L1"} and call.lease_call
    unfenced = calls.nack("t1", None, "why", 3)
    assert unfenced.json == {"reason": "why", "delaySeconds": 3} and unfenced.headers == {}
    failed = calls.report("t/1", "L", "FAILED", error="e" * 5000)
    assert failed.path == "/tasks/t%2F1/result" and len(failed.json["error"]) == 4096


def test_leases_remembers_claims_bounded() -> None:
    leases = calls.Leases(limit=2)
    for i in range(3):
        leases.remember(Task.from_wire({**TASK, "id": f"t{i}", "leaseId": f"L{i}"}))
    assert leases.resolve("t0") == ("t0", None)  # evicted, oldest first
    assert leases.resolve("t2") == ("t2", "L2")
    leases.forget("t2")
    assert leases.resolve("t2") == ("t2", None)
    assert leases.resolve(Task.from_wire(TASK)) == ("t1", "L1")


def test_claim_and_result_clamp_the_wait() -> None:
    call = calls.claim(["a"], 60, 99)
    assert call.json == {"commands": ["a"], "leaseSeconds": 60, "waitSeconds": 30}
    assert call.wait == 30
    assert calls.claim(None, None, 0).json == {}
    assert calls.interpret(call, answer(204)) is None
    claimed = calls.interpret(call, answer(200, TASK))
    assert claimed is not None and claimed.lease_id == "L1"
    assert calls.result("t", 45).params == {"waitSeconds": "30"}
    assert calls.timeout_for(10, call).read == 40


def test_no_result_yet_is_none_not_an_error() -> None:
    call = calls.result("t", 5)
    missing = {"error": "result not found", "code": "result_not_found", "details": {}}
    assert calls.interpret(call, answer(404, missing)) is None
    assert calls.interpret(call, answer(404, {"error": "result not found"})) is None  # older
    with pytest.raises(NotFound):
        calls.interpret(call, answer(404, {"error": "gone", "code": "task_not_found"}))
    with pytest.raises(NotFound):
        calls.interpret(calls.get("t"), answer(404, missing))
    done = {"task": {**TASK, "status": "COMPLETED"}, "result": {"taskId": "t1"}}
    got = calls.interpret(call, answer(200, done))
    assert got is not None and got.done and got.result is not None


def test_batch_items_map_to_tasks_and_errors() -> None:
    call = calls.create_batch([NewTask(command="c")], probe=True)
    assert call.headers == {"Connection": "close"} and call.retry == "unsent"
    items = calls.interpret(
        call,
        answer(
            202,
            {
                "tasks": [
                    TASK,
                    {"error": "command: bad", "code": "validation_error"},
                    {"error": {"error": "dup", "code": "conflict"}},
                ]
            },
        ),
    )
    assert isinstance(items[0], Task)
    assert isinstance(items[1], BadRequest) and items[1].code == "validation_error"
    assert isinstance(items[2], Conflict)
    with pytest.raises(calls.RouteMissing):
        calls.interpret(call, answer(405, {"error": "x", "code": "method_not_allowed"}))
    with pytest.raises(calls.RouteMissing):
        calls.interpret(call, answer(404))
    keyed = calls.create_batch([NewTask(command="c", idempotency_key="k")])
    assert keyed.retry == "always" and keyed.headers == {}


@pytest.mark.parametrize(
    ("status", "body", "lease_call", "cls"),
    [
        (400, {"error": "command: bad", "code": "validation_error"}, False, BadRequest),
        (415, {"error": "json please"}, False, BadRequest),
        (401, {"error": "no", "code": "unauthorized"}, False, Unauthorized),
        (403, {"error": "no", "code": "forbidden"}, False, Forbidden),
        (404, {"error": "gone", "code": "task_not_found"}, True, NotFound),
        (409, {"error": "done", "code": "already_terminal"}, False, Conflict),
        (409, {"error": "lost", "code": "lease_lost"}, False, LeaseLost),
        (409, {"error": "theirs", "code": "not_lease_holder"}, True, LeaseLost),
        # codeqd 0.2 and codeQ answer 403 to a worker that is not the lease holder.
        (403, {"error": "theirs", "code": "not_lease_holder"}, True, LeaseLost),
        (403, {"error": "theirs", "code": "not_lease_holder"}, False, LeaseLost),
        (409, {"error": "not in progress", "code": "invalid_state"}, True, LeaseLost),
        (409, {"error": "not in progress", "code": "invalid_state"}, False, Conflict),
        (500, {"error": "internal"}, False, ServerError),
        (502, "<html>bad gateway</html>", False, ServerError),
        (418, None, False, CodeqError),
    ],
)
def test_error_mapping(status: int, body: Any, lease_call: bool, cls: type) -> None:
    err = error_from_response(status, body, {"x-request-id": "r1"}, lease_call=lease_call)
    assert type(err) is cls and err.status == status and err.request_id == "r1"
    assert str(err).startswith(str(status))


def test_rate_limited_and_unavailable_carry_retry_after() -> None:
    err = error_from_response(429, {"error": "slow down", "retryAfterSeconds": 7})
    assert isinstance(err, RateLimited) and err.retry_after == 7
    err = error_from_response(429, {"error": "slow down"}, {"retry-after": "3"})
    assert isinstance(err, RateLimited) and err.retry_after == 3
    err = error_from_response(
        503, {"error": "store", "code": "store_unavailable"}, {"retry-after": "2"}
    )
    assert isinstance(err, ServiceUnavailable) and err.retry_after == 2
    assert isinstance(error_from_item({"error": "x", "code": "rate_limited"}), RateLimited)
    assert type(error_from_item({"error": "x", "code": "brand_new"})) is BadRequest


def test_unparsable_success_is_a_server_error() -> None:
    with pytest.raises(ServerError):
        calls.interpret(calls.get("t"), answer(200, {"no": "id"}))


def test_retry_decisions() -> None:
    policy = RetryPolicy(attempts=3, base=0.1, cap=1.0)
    safe, unsafe = calls.get("t"), calls.create(NewTask(command="c"))
    refused = httpx.ConnectError("refused")
    reset = httpx.ReadError("reset")
    assert calls.retry_delay(policy, unsafe, 1, error=refused) is not None  # never sent
    assert calls.retry_delay(policy, unsafe, 1, error=reset) is None  # may have landed
    assert calls.retry_delay(policy, safe, 1, error=reset) is not None
    assert calls.retry_delay(policy, safe, 3, error=refused) is None  # tries used up
    busy = answer(503, {"error": "store"}, {"retry-after": "0.5"})
    delay = calls.retry_delay(policy, safe, 1, response=busy)
    assert delay is not None and 0.5 <= delay <= 1.0
    assert calls.retry_delay(policy, unsafe, 1, response=busy) is None
    assert calls.retry_delay(policy, safe, 1, response=answer(500, {})) is None
    assert (
        calls.retry_delay(
            policy, calls.create(NewTask(command="c", idempotency_key="k")), 1, response=busy
        )
        is not None
    )
    for tries in range(1, 10):
        assert 0 <= policy.backoff(tries) <= 1.0
