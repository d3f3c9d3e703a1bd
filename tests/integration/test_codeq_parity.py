"""codeQ's wire contract where codeqd used to differ (issue 17), over real HTTP: each
answer's exact status and body."""

from __future__ import annotations

from typing import Any

import trio

from tests.integration.conftest import Api

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
RESULT_NOT_FOUND = {"error": "result not found", "code": "result_not_found", "details": {}}


def nulls(value: Any, path: str = "") -> list[str]:
    """Where ``value`` has a null (a worker's result and a payload are data: skipped)."""
    if value is None:
        return [path or "."]
    if isinstance(value, dict):
        return [
            p
            for k, v in value.items()
            if k not in ("payload", "result") or not isinstance(v, dict | list)
            for p in nulls(v, f"{path}.{k}")
        ]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nulls(v, f"{path}[{i}]")]
    return []


async def complete(api: Api, task_id: str, lease_id: str, **body: Any) -> Any:
    body = body or {"status": "COMPLETED", "result": {"ok": True}}
    r = await api.call(
        "POST", f"/tasks/{task_id}/result", api.worker, {**body, "leaseId": lease_id}
    )
    assert r.status_code == 200, r.text
    return r.json()


async def test_result_is_404_until_there_is_one(api: Api) -> None:
    task = await api.create("job", {})
    path = f"/tasks/{task['id']}/result"
    r = await api.call("GET", path, api.producer)
    assert (r.status_code, r.json()) == (404, RESULT_NOT_FOUND)
    # A wait that ends without a result: 404 too.
    r = await api.call("GET", f"{path}?waitSeconds=1", api.producer)
    assert (r.status_code, r.json()) == (404, RESULT_NOT_FOUND)
    claimed = (await api.claim(commands=["job"])).json()
    r = await api.call("GET", path, api.producer)
    assert (r.status_code, r.json()) == (404, RESULT_NOT_FOUND)  # in progress: still none

    # A wait far above 60 s is clamped, not refused, and woken by the result.
    got: list[Any] = []

    async def wait() -> None:
        got.append(await api.call("GET", f"{path}?waitSeconds=3600", api.producer))

    async with trio.open_nursery() as n:
        n.start_soon(wait)
        with trio.fail_after(5):
            while api.ctx.hub.waiting < 1:
                await trio.sleep(0.01)  # polls: the hub has no event for its count
        doc = await complete(api, task["id"], claimed["leaseId"])
    (r,) = got
    assert r.status_code == 200, r.text
    assert r.json()["result"] == doc
    assert r.json()["task"]["status"] == "COMPLETED"
    # An unknown task stays task_not_found.
    r = await api.call("GET", "/tasks/01a207b1-88ed-78c7-89ec-9d85f8c0b900/result", api.producer)
    assert (r.status_code, r.json()["code"]) == (404, "task_not_found")


async def test_nack_answers_requeued_then_dlq(api: Api) -> None:
    task = await api.create("job", {}, maxAttempts=2)
    await api.claim(commands=["job"])
    r = await api.call("POST", f"/tasks/{task['id']}/nack", api.worker, {"delaySeconds": 0})
    assert (r.status_code, r.json()) == (200, {"status": "requeued", "delaySeconds": 0})
    await api.claim(commands=["job"])
    # The last attempt: dead-lettered, codeQ's "dlq" (not retried, so no delay).
    r = await api.call("POST", f"/tasks/{task['id']}/nack", api.worker, {"reason": "no"})
    assert (r.status_code, r.json()) == (200, {"status": "dlq", "delaySeconds": 0})
    r = await api.call("GET", f"/tasks/{task['id']}", api.producer)
    assert (r.json()["status"], r.json()["deadLettered"]) == ("FAILED", True)


async def test_cleanup_answers_what_it_applied(api: Api) -> None:
    r = await api.call(
        "POST", "/admin/tasks/cleanup", api.admin, {"before": "2020-01-01T00:00:00Z", "limit": 5}
    )
    assert (r.status_code, r.json()) == (
        200,
        {"deleted": 0, "before": "2020-01-01T00:00:00.000Z", "limit": 5},
    )
    r = await api.call("POST", "/admin/tasks/cleanup", api.admin, {})
    body = r.json()
    assert (r.status_code, body["deleted"], body["limit"]) == (200, 0, 1000)
    assert body["before"].endswith("Z") and set(body) == {"deleted", "before", "limit"}


async def test_claim_wait_above_30_is_clamped(api: Api) -> None:
    task = await api.create("job", {})
    r = await api.claim(commands=["job"], waitSeconds=31)
    assert r.status_code == 200 and r.json()["id"] == task["id"]
    got: list[int] = []

    async def wait() -> None:
        got.append((await api.claim(commands=["late"], waitSeconds=10**6)).status_code)

    async with trio.open_nursery() as n:
        n.start_soon(wait)
        with trio.fail_after(5):
            while api.ctx.hub.waiting < 1:
                await trio.sleep(0.01)  # polls: the hub has no event for its count
        await api.create("late", {})
    assert got == [200]


async def test_any_json_payload_but_null(api: Api) -> None:
    payloads: list[Any] = ["text", "", 0, 12.5, False, [1, {"a": None}], {"k": [None]}, {}]
    ids = []
    for payload in payloads:
        r = await api.call("POST", "/tasks", api.producer, {"command": "any", "payload": payload})
        assert r.status_code == 202, r.text
        assert r.json()["payload"] == payload
        ids.append(r.json()["id"])
        got = await api.call("GET", f"/tasks/{r.json()['id']}", api.producer)
        assert got.json()["payload"] == payload
    claimed = [(await api.claim(commands=["any"])).json() for _ in payloads]
    assert [c["payload"] for c in claimed] == payloads and [c["id"] for c in claimed] == ids
    r = await api.call("POST", "/tasks", api.producer, {"command": "any", "payload": None})
    assert (r.status_code, r.json()) == (
        400,
        {
            "error": "payload: must not be null",
            "code": "validation_error",
            "details": {"field": "payload"},
        },
    )
    depth = api.ctx.config.limits.max_payload_depth
    deep: Any = "x"
    for _ in range(depth):
        deep = [deep]
    r = await api.call("POST", "/tasks", api.producer, {"command": "any", "payload": deep})
    assert (r.status_code, r.json()["details"]) == (400, {"field": "payload"})
    big = "x" * api.ctx.config.limits.body_bytes
    r = await api.call("POST", "/tasks", api.producer, {"command": "any", "payload": big})
    assert (r.status_code, r.json()["code"]) == (413, "payload_too_large")


async def test_no_null_in_tasks_results_and_answers(api: Api) -> None:
    task = await api.create("job", {"k": None}, webhook="https://example.com/hook")
    assert nulls(task) == []
    claimed = (await api.claim(commands=["job"])).json()
    assert nulls(claimed) == []
    r = await api.call("POST", f"/tasks/{task['id']}/nack", api.worker, {"delaySeconds": 0})
    assert nulls(r.json()) == []
    claimed = (await api.claim(commands=["job"])).json()
    doc = await complete(api, task["id"], claimed["leaseId"], status="FAILED", error="boom")
    assert doc == {
        "taskId": task["id"],
        "status": "FAILED",
        "error": "boom",
        "artifacts": [],
        "completedAt": doc["completedAt"],
    }
    r = await api.call("GET", f"/tasks/{task['id']}/result", api.producer)
    assert r.json()["result"] == doc and nulls(r.json()) == []
    other = await api.create("job", {})
    claimed = (await api.claim(commands=["job"])).json()
    doc = await complete(api, other["id"], claimed["leaseId"])
    assert doc == {
        "taskId": other["id"],
        "status": "COMPLETED",
        "result": {"ok": True},
        "artifacts": [],
        "completedAt": doc["completedAt"],
    }


async def test_result_key_once_the_result_is_stored(api: Api) -> None:
    task = await api.create("job", {})
    assert "resultKey" not in task
    claimed = (await api.claim(commands=["job"])).json()
    assert "resultKey" not in claimed
    await complete(api, task["id"], claimed["leaseId"])
    r = await api.call("GET", f"/tasks/{task['id']}/result", api.producer)
    key = r.json()["task"]["resultKey"]
    assert isinstance(key, str) and key
    assert (await api.call("GET", f"/tasks/{task['id']}", api.producer)).json()["resultKey"] == key
    # Dead-lettered or cancelled: no worker's result, no key.
    dead = await api.create("job", {}, maxAttempts=1)
    await api.claim(commands=["job"])
    await api.call("POST", f"/tasks/{dead['id']}/nack", api.worker, {})
    assert "resultKey" not in (await api.call("GET", f"/tasks/{dead['id']}", api.producer)).json()
    cancelled = await api.create("job", {}, delaySeconds=60)
    r = await api.call("DELETE", f"/tasks/{cancelled['id']}", api.producer)
    assert r.json()["status"] == "CANCELLED" and "resultKey" not in r.json()


async def test_trace_context_is_stored_and_returned(api: Api) -> None:
    headers = {"traceparent": PARENT, "tracestate": "vendor=opaque"}
    r = await api.call(
        "POST", "/tasks", api.producer, {"command": "tr", "payload": {}}, headers=headers
    )
    task = r.json()
    assert (task["traceParent"], task["traceState"]) == (PARENT, "vendor=opaque")
    claimed = (await api.claim(commands=["tr"])).json()
    assert (claimed["traceParent"], claimed["traceState"]) == (PARENT, "vendor=opaque")
    # Invalid: ignored, not stored, and the create still succeeds.
    bad = {"traceparent": "00-nope", "tracestate": "vendor=opaque"}
    r = await api.call(
        "POST", "/tasks", api.producer, {"command": "tr", "payload": {}}, headers=bad
    )
    assert r.status_code == 202 and "traceParent" not in r.json() and "traceState" not in r.json()
    # A batch: every task joins the request's trace.
    r = await api.call(
        "POST",
        "/tasks/batch",
        api.producer,
        {"tasks": [{"command": "tr", "payload": 1}, {"command": "tr", "payload": 2}]},
        headers={"traceparent": PARENT},
    )
    assert [t["traceParent"] for t in r.json()["tasks"]] == [PARENT, PARENT]
    assert all("traceState" not in t for t in r.json()["tasks"])
