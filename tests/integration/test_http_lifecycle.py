"""The task lifecycle over real HTTP against a real redis-server."""

from __future__ import annotations

import trio

from tests.integration.conftest import Api


async def test_create_claim_complete_and_read_result(api: Api) -> None:
    task = await api.create("email", {"to": "a@b.c", "n": 12345678901234567890})
    assert task["status"] == "PENDING" and task["attempts"] == 0
    assert task["payload"] == {"to": "a@b.c", "n": 12345678901234567890}

    r = await api.claim(commands=["email"], leaseSeconds=30)
    assert r.status_code == 200, r.text
    claimed = r.json()
    assert claimed["id"] == task["id"]
    assert claimed["status"] == "IN_PROGRESS" and claimed["attempts"] == 1
    assert claimed["workerId"] == "worker-1" and claimed["leaseId"]

    r = await api.call(
        "POST",
        f"/tasks/{task['id']}/result",
        api.worker,
        {"status": "COMPLETED", "result": {"sent": True}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "COMPLETED" and r.json()["result"] == {"sent": True}

    r = await api.call("GET", f"/tasks/{task['id']}/result", api.producer)
    body = r.json()
    assert body["task"]["status"] == "COMPLETED"
    assert body["result"]["result"] == {"sent": True}

    # Double result is a conflict, not a second completion.
    r = await api.call(
        "POST", f"/tasks/{task['id']}/result", api.worker, {"status": "COMPLETED", "result": {}}
    )
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"


async def test_claim_empty_is_204_and_priorities_then_fifo(api: Api) -> None:
    assert (await api.claim(commands=["q"])).status_code == 204
    low1 = await api.create("q", {"i": 1}, priority=1)
    high = await api.create("q", {"i": 2}, priority=9)
    low2 = await api.create("q", {"i": 3}, priority=1)
    other = await api.create("r", {"i": 4}, priority=5)
    order = []
    for _ in range(4):
        r = await api.claim(commands=["q", "r"])
        order.append(r.json()["id"])
    assert order == [high["id"], other["id"], low1["id"], low2["id"]]


async def test_long_poll_claim_is_woken_by_create(api: Api) -> None:
    got: list[int] = []

    async def waiter() -> None:
        r = await api.claim(commands=["late"], waitSeconds=20)
        got.append(r.status_code)

    async with trio.open_nursery() as n:
        n.start_soon(waiter)
        # Wait until the claim is parked in the hub, then create.
        with trio.fail_after(5):
            while api.ctx.hub.waiting == 0:
                await trio.sleep(0.01)  # polls: the hub has no event for its count
        started = trio.current_time()
        await api.create("late", {})
    assert got == [200]
    assert trio.current_time() - started < 5  # woken, not the 5 s fallback poll


async def test_heartbeat_nack_and_dead_letter(api: Api) -> None:
    task = await api.create("job", {}, maxAttempts=2)
    r = await api.claim(commands=["job"])
    lease = r.json()["leaseId"]
    r = await api.call(
        "POST",
        f"/tasks/{task['id']}/heartbeat",
        api.worker,
        {"extendSeconds": 120, "leaseId": lease},
    )
    assert r.status_code == 200 and r.json()["ok"] is True

    other = api.token("worker", sub="worker-2")
    r = await api.call("POST", f"/tasks/{task['id']}/heartbeat", other, {})
    assert r.status_code == 403 and r.json()["code"] == "not_lease_holder"

    r = await api.call(
        "POST", f"/tasks/{task['id']}/nack", api.worker, {"delaySeconds": 0, "reason": "flaky"}
    )
    assert r.json() == {"status": "requeued", "delaySeconds": 0}
    r = await api.claim(commands=["job"])
    assert r.json()["attempts"] == 2
    stale = await api.call("POST", f"/tasks/{task['id']}/heartbeat", api.worker, {"leaseId": lease})
    assert stale.status_code == 409 and stale.json()["code"] == "lease_lost"
    r = await api.call("POST", f"/tasks/{task['id']}/nack", api.worker, {"reason": "again"})
    # codeQ's answer when the attempts ran out (the task is not retried: no delay).
    assert (r.status_code, r.json()) == (200, {"status": "dlq", "delaySeconds": 0})
    got = (await api.call("GET", f"/tasks/{task['id']}", api.producer)).json()
    assert got["status"] == "FAILED" and got["error"] == "MAX_ATTEMPTS"
    stats = (await api.call("GET", "/admin/queues/job/stats", api.admin)).json()
    assert stats == {
        "command": "job",
        "ready": 0,
        "delayed": 0,
        "inProgress": 0,
        "dlq": 1,
        "paused": False,
    }
    r = await api.call("POST", "/admin/queues/job/dlq/replay", api.admin, {})
    assert r.json()["replayed"] == 1
    assert (await api.claim(commands=["job"])).json()["attempts"] == 1
