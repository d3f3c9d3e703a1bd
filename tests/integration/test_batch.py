"""Batch endpoints: per-item outcomes in order, partial failures, idempotency per item,
long-poll wake-ups, and batches that span shards."""

from __future__ import annotations

from typing import Any

import trio

from tests.integration.conftest import Api


async def create_batch(api: Api, tasks: list[Any], token: str | None = None) -> Any:
    r = await api.call("POST", "/tasks/batch", token or api.producer, {"tasks": tasks})
    assert r.status_code == 202, r.text
    return r.json()["tasks"]


async def claim_batch(api: Api, **body: Any) -> list[Any]:
    r = await api.call("POST", "/tasks/claim/batch", api.worker, body)
    assert r.status_code == 200, r.text
    return r.json()["tasks"]  # type: ignore[no-any-return]


async def report_batch(api: Api, results: list[Any], token: str | None = None) -> list[Any]:
    r = await api.call("POST", "/tasks/batch/results", token or api.worker, {"results": results})
    assert r.status_code == 200, r.text
    return r.json()["results"]  # type: ignore[no-any-return]


async def test_create_batch_reports_each_item_in_order(api: Api) -> None:
    first = await api.create("mail", {"n": 0}, idempotencyKey="k-first")
    out = await create_batch(
        api,
        [
            {"command": "mail", "payload": {"n": 1}, "priority": 9},
            {"command": "bad command!", "payload": {}},
            {"command": "mail", "payload": {"n": 2}, "idempotencyKey": "k-dup"},
            {"command": "mail", "payload": None},
            {"command": "mail", "payload": {"n": 3}, "idempotencyKey": "k-dup"},
            {"command": "mail", "payload": {"n": 4}, "idempotencyKey": "k-first"},
            {"command": "mail", "payload": {"n": 5}, "delaySeconds": 60},
            "not an object",
        ],
    )
    assert [o.get("code") for o in out] == [
        None,
        "validation_error",
        None,
        "validation_error",
        None,
        None,
        None,
        "bad_request",
    ]
    assert out[1]["details"]["field"] == "command" and out[3]["details"]["field"] == "payload"
    assert out[0]["status"] == "PENDING" and out[0]["payload"] == {"n": 1}
    assert out[4]["id"] == out[2]["id"] and out[4]["payload"] == {"n": 2}  # same batch
    assert out[5]["id"] == first["id"] and out[5]["payload"] == {"n": 0}  # earlier create
    stats = (await api.call("GET", "/admin/queues/mail/stats", api.admin)).json()
    assert (stats["ready"], stats["delayed"]) == (3, 1)


async def test_batch_limits_and_shapes(api: Api) -> None:
    limit = api.ctx.config.limits.batch_max
    await api.create("c", {"kept": True})  # one task a wrongly accepted claim could take
    too_many = [{"command": "c", "payload": {}}] * (limit + 1)
    # (path, body, code, the field named, words the message must carry)
    cases: list[tuple[str, Any, str, str | None, str]] = [
        ("/tasks/batch", {"tasks": too_many}, "validation_error", "tasks", f"at most {limit}"),
        ("/tasks/batch", {"tasks": "x"}, "validation_error", "tasks", "expected a list"),
        ("/tasks/batch", [1], "bad_request", None, "JSON object"),
        ("/tasks/batch/results", {"results": {}}, "validation_error", "results", "a list"),
        ("/tasks/claim/batch", {}, "validation_error", "maxTasks", "required"),
        ("/tasks/claim/batch", {"maxTasks": limit + 1}, "validation_error", "maxTasks", "1000"),
    ]
    for path, body, code, field, words in cases:
        token = api.producer if path == "/tasks/batch" else api.worker
        r = await api.call("POST", path, token, body)
        assert r.status_code == 400, (path, r.text)
        err = r.json()
        assert err["code"] == code and words in err["error"], (path, err)
        assert err["details"].get("field") == field, (path, err)
    # A refused batch stores nothing (not the first `limit` items), and a refused claim
    # batch leases nothing.
    stats = (await api.call("GET", "/admin/queues/c/stats", api.admin)).json()
    assert (stats["ready"], stats["inProgress"]) == (1, 0), stats
    assert await create_batch(api, []) == []
    r = await api.call("POST", "/tasks/batch", api.worker, {"tasks": []})
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden" and "producer token" in r.json()["error"]


async def test_claim_batch_then_report_batch_with_partial_failures(api: Api) -> None:
    created = await create_batch(api, [{"command": "job", "payload": {"i": i}} for i in range(5)])
    assert await claim_batch(api, commands=["none-here"], maxTasks=3) == []
    tasks = await claim_batch(api, commands=["job"], maxTasks=3, leaseSeconds=60)
    assert [t["id"] for t in tasks] == [c["id"] for c in created[:3]]
    assert all(t["status"] == "IN_PROGRESS" and t["leaseId"] for t in tasks)
    other = api.token("worker", sub="worker-2")
    (foreign,) = (
        await api.call("POST", "/tasks/claim/batch", other, {"commands": ["job"], "maxTasks": 1})
    ).json()["tasks"]

    out = await report_batch(
        api,
        [
            {
                "taskId": tasks[0]["id"],
                "status": "COMPLETED",
                "result": {"ok": 1},
                "leaseId": tasks[0]["leaseId"],
            },
            {
                "taskId": tasks[1]["id"],
                "status": "FAILED",
                "error": "boom",
                "artifacts": [{"name": "log", "url": "https://x/log"}],
            },
            {"taskId": tasks[2]["id"], "status": "COMPLETED", "result": {}, "leaseId": "stale"},
            {"taskId": foreign["id"], "status": "COMPLETED", "result": {}},
            {"taskId": "no-such-task", "status": "COMPLETED", "result": {}},
            {"taskId": tasks[0]["id"], "status": "COMPLETED", "result": {}},
            {"taskId": tasks[2]["id"], "status": "DONE"},
            {"status": "COMPLETED", "result": {}},
        ],
    )
    assert out[0]["status"] == "COMPLETED" and out[0]["result"] == {"ok": 1}
    assert out[1]["status"] == "FAILED" and out[1]["artifacts"][0]["name"] == "log"
    assert [o.get("code") for o in out[2:]] == [
        "lease_lost",
        "not_lease_holder",
        "task_not_found",
        "invalid_state",
        "validation_error",
        "validation_error",
    ]
    assert out[4]["taskId"] == "no-such-task" and out[7]["taskId"] is None

    r = await api.call("GET", f"/tasks/{tasks[1]['id']}/result", api.producer)
    assert r.json()["task"]["status"] == "FAILED" and r.json()["result"]["error"] == "boom"
    stats = (await api.call("GET", "/admin/queues/job/stats", api.admin)).json()
    assert (stats["ready"], stats["inProgress"]) == (1, 2)  # tasks[2] and foreign still leased


async def test_long_polls_are_woken_by_a_batch_create_and_results_by_a_batch_report(
    api: Api,
) -> None:
    claimed: list[list[Any]] = []
    results: list[Any] = []

    async def claimer() -> None:
        claimed.append(await claim_batch(api, commands=["wake"], maxTasks=10, waitSeconds=20))

    async with trio.open_nursery() as n:
        n.start_soon(claimer)
        with trio.fail_after(5):
            while api.ctx.hub.waiting < 1:
                await trio.sleep(0.01)  # polls: the hub has no event for its count
        started = trio.current_time()
        await create_batch(api, [{"command": "wake", "payload": {}} for _ in range(4)])
    (tasks,) = claimed
    assert len(tasks) == 4  # one atomic batch: all ready when the claim wakes
    assert trio.current_time() - started < 5  # woken, not the 5 s fallback poll

    async with trio.open_nursery() as n:

        async def wait_result() -> None:
            r = await api.call(
                "GET", f"/tasks/{tasks[0]['id']}/result?waitSeconds=20", api.producer
            )
            results.append(r.json()["result"])

        n.start_soon(wait_result)
        with trio.fail_after(5):
            while api.ctx.hub.waiting < 1:
                await trio.sleep(0.01)  # polls: the hub has no event for its count
        started = trio.current_time()
        await report_batch(
            api, [{"taskId": t["id"], "status": "COMPLETED", "result": {}} for t in tasks]
        )
    assert results and results[0]["status"] == "COMPLETED"
    assert trio.current_time() - started < 5
