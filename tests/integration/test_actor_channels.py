"""The actors' memory channels: in-process wake-ups, group commit, ordered shutdown.

- A store transition posts its hint straight to this process's inboxes, so a parked
  claim here is woken while the store's pub/sub is down (while it is up, the hub takes
  pub/sub's copy: tests/integration/store/test_pubsub.py).
- Single creates, claims and results that arrive together share a store call (the
  writer); every caller gets exactly its own answer, nothing is duplicated or lost; a
  claimer that stops waiting holds no lease.
- Shutdown: the HTTP server drains first, then the writer; every create that was
  answered 202 is in the store.
"""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from codeqd.auth import Authenticator
from codeqd.context import Context
from codeqd.http import serve
from codeqd.store import Store, WakeHub, connect
from tests.integration.conftest import Api, make_config
from tests.integration.store.conftest import new_task


async def test_a_parked_claim_is_woken_in_process_without_pub_sub(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    # A 60 s poll fallback and no pub/sub listener: only the in-process hint can wake it.
    config = make_config(tmp_path, actors={"ingress": {"bind": "127.0.0.1:0", "poll_fallback": 60}})
    async with connect(config, redis_url) as store:
        await store.init_keyspace()
        store.wakeups.running = True  # as if this process's listener ran elsewhere: it never
        ctx = Context(config=config, store=store, hub=WakeHub(), auth=Authenticator(config))
        base = (await nursery.start(serve, ctx))[0]
        import httpx

        async with httpx.AsyncClient(timeout=40) as client:
            api = Api(ctx, base, client)
            got: list[int] = []

            async def parked() -> None:
                r = await api.claim(commands=["local"], waitSeconds=25)
                got.append(r.status_code)

            async with trio.open_nursery() as n:
                n.start_soon(parked)
                with trio.fail_after(5):
                    while ctx.hub.waiting == 0:  # no event for "parked": poll the count
                        await trio.sleep(0.01)
                assert not ctx.hub.connected.is_set()  # no subscription: would poll at 60 s
                with trio.fail_after(5):  # woken by the hint, not by the 25 s deadline
                    await api.create("local", {})
                    while not got:
                        await trio.sleep(0.01)
            assert got == [200]
        ctx.shutting_down.set()


async def test_group_commit_answers_every_caller_its_own_task(api: Api) -> None:
    writer = api.ctx.store.writer
    assert writer.running
    groups_before, requests_before = writer.groups, writer.requests
    answers: dict[int, dict[str, object]] = {}

    async def create(i: int) -> None:
        key = {"idempotencyKey": f"k{i % 150}"} if i % 2 else {}
        r = await api.call(
            "POST", "/tasks", api.producer, {"command": "gc", "payload": {"i": i}, **key}
        )
        assert r.status_code == 202, r.text
        answers[i] = r.json()

    async with trio.open_nursery() as n:
        for i in range(300):
            n.start_soon(create, i)
    # Grouped: fewer store calls than requests (300 at once on one connection pool).
    assert writer.requests - requests_before == 300
    assert writer.groups - groups_before < 300
    # Each caller got its own task back: its payload, or (a repeated idempotency key)
    # the first task of that key, which has the key's first caller's payload.
    by_key: dict[str, str] = {}
    for i, task in answers.items():
        if i % 2:
            first = by_key.setdefault(f"k{i % 150}", str(task["id"]))
            assert task["id"] == first
        else:
            assert task["payload"] == {"i": i}
    ids = {str(t["id"]) for t in answers.values()}
    assert len(ids) == 150 + 75  # 150 plain creates, 75 distinct keys among the odd ones
    stats = (await api.call("GET", "/admin/queues/gc", api.admin)).json()
    assert stats["ready"] == len(ids)  # nothing duplicated, nothing lost

    # Results through the writer: each worker's report answered with its own result.
    claimed = (await api.call("POST", "/tasks/claim/batch", api.worker, {"maxTasks": 200})).json()[
        "tasks"
    ]
    results: dict[str, int] = {}

    async def report(task: dict[str, object]) -> None:
        r = await api.call(
            "POST",
            f"/tasks/{task['id']}/result",
            api.worker,
            {"status": "COMPLETED", "result": {"id": task["id"]}, "leaseId": task["leaseId"]},
        )
        assert r.status_code == 200, r.text
        assert r.json()["taskId"] == task["id"] and r.json()["result"] == {"id": task["id"]}
        results[str(task["id"])] = r.status_code

    async with trio.open_nursery() as n:
        for task in claimed:
            n.start_soon(report, task)
    assert len(results) == len(claimed) == 200
    again = await api.call(
        "POST",
        f"/tasks/{claimed[0]['id']}/result",
        api.worker,
        {"status": "COMPLETED", "result": {}, "leaseId": claimed[0]["leaseId"]},
    )
    assert again.status_code == 409  # refusals are per caller, through the writer too


async def test_group_commit_of_claims_leases_each_task_to_its_own_claimer(api: Api) -> None:
    writer = api.ctx.store.writer
    created = (
        await api.call(
            "POST",
            "/tasks/batch",
            api.producer,
            {"tasks": [{"command": "gcc", "payload": {"i": i}} for i in range(60)]},
        )
    ).json()["tasks"]
    assert len(created) == 60
    groups_before, requests_before = writer.groups, writer.requests
    got: dict[str, dict[str, object]] = {}  # worker -> its task
    empty: list[str] = []

    async def claim(w: str) -> None:
        token = api.token("worker", sub=w)
        r = await api.call("POST", "/tasks/claim", token, {"commands": ["gcc"]})
        assert r.status_code in (200, 204), r.text
        if r.status_code == 200:
            got[w] = r.json()
        else:
            empty.append(w)

    async with trio.open_nursery() as n:
        for i in range(80):
            n.start_soon(claim, f"w{i}")
    assert writer.requests - requests_before == 80
    assert writer.groups - groups_before < 80  # grouped
    # 60 tasks among 80 claimers: each task to exactly one, the rest answered 204.
    assert len(got) == 60 and len(empty) == 20
    assert {str(t["id"]) for t in got.values()} == {str(t["id"]) for t in created}
    for w, task in got.items():  # each lease is its claimer's own
        meta = (await api.call("GET", f"/tasks/{task['id']}", api.admin)).json()
        assert meta["workerId"] == w and meta["leaseId"] == task["leaseId"]
    # Fencing holds per claimer: another worker's report is refused, the holder's taken.
    (_, t0), (w1, _) = list(got.items())[:2]
    body = {"status": "COMPLETED", "result": {}, "leaseId": t0["leaseId"]}
    other = await api.call("POST", f"/tasks/{t0['id']}/result", api.token("worker", sub=w1), body)
    assert other.status_code == 403, other.text  # not the lease holder

    async def report(w: str, task: dict[str, object]) -> None:
        r = await api.call(
            "POST",
            f"/tasks/{task['id']}/result",
            api.token("worker", sub=w),
            {"status": "COMPLETED", "result": {"w": w}, "leaseId": task["leaseId"]},
        )
        assert r.status_code == 200, r.text

    async with trio.open_nursery() as n:
        for w, task in got.items():
            n.start_soon(report, w, task)
    stats = (await api.call("GET", "/admin/queues/gcc", api.admin)).json()
    assert stats["ready"] == 0 and stats["inProgress"] == 0 and stats["dlq"] == 0


async def test_a_claimer_that_stops_waiting_in_a_group_holds_no_lease(
    nursery: trio.Nursery, store: Store
) -> None:
    await nursery.start(store.writer.run)
    meta, _, _ = await store.create("default", new_task("left"))
    claimed: list[object] = []
    requests = store.writer.requests

    async def claimer(cancel_scope: trio.CancelScope) -> None:
        with cancel_scope:
            claimed.append(await store.claim("default", "gone", ["left"], 30))

    scope = trio.CancelScope()
    async with trio.open_nursery() as n:
        n.start_soon(claimer, scope)
        # The claim is with the writer (queued or in flight): its caller now leaves.
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
    assert claimed == []  # the caller never saw a task...
    assert store.writer.requests == requests + 1  # ...though the writer claimed it,
    with trio.fail_after(5):  # so the writer hands it back, attempt given back
        while True:
            events = await store.task_events("default", meta["id"])
            kinds = [(e.kind, e.fields.get("worker")) for e in events]
            if ("released", "gone") in kinds:
                break
            await trio.sleep(0.01)
    assert kinds[-2:] == [("claimed", "gone"), ("released", "gone")]
    now, _ = await store.get("default", meta["id"])
    assert now["status"] == "PENDING" and now["attempts"] == 0
    again = await store.claim("default", "next", ["left"], 30)
    assert [t.meta["id"] for t in again] == [meta["id"]]


async def test_shutdown_drains_the_server_before_the_writer(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config = make_config(tmp_path)
    async with connect(config, redis_url) as store:
        await store.init_keyspace()
        ctx = Context(config=config, store=store, hub=WakeHub(), auth=Authenticator(config))
        import httpx

        accepted: list[str] = []
        async with trio.open_nursery() as server:
            base = (await server.start(serve, ctx))[0]
            async with httpx.AsyncClient(timeout=40) as client:
                api = Api(ctx, base, client)

                async def create(i: int) -> None:
                    try:
                        r = await api.call(
                            "POST", "/tasks", api.producer, {"command": "sd", "payload": {"i": i}}
                        )
                    except httpx.TransportError:
                        return  # refused once the server stopped accepting: never stored
                    if r.status_code == 202:
                        accepted.append(r.json()["id"])

                async with trio.open_nursery() as n:
                    for i in range(200):
                        n.start_soon(create, i)
                    await trio.sleep(0)
                    ctx.shutting_down.set()  # mid-burst
        assert not store.writer.running  # stopped after the server
        for task_id in accepted:  # every 202 is in the store
            meta, _ = await store.get("default", task_id)
            assert meta["status"] == "PENDING"
