"""Result callbacks end to end in one trio run: the real API, the dispatcher actor and a
real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing
from prometheus_client import REGISTRY

from codeqd import config as cfgmod
from codeqd import metrics, webhooks
from codeqd._version import __version__
from codeqd.actors.dispatcher import Dispatcher
from codeqd.context import Context
from codeqd.live import Live
from codeqd.store import Resync, TaskDone, connect
from codeqd.store._outbox import Outbox
from tests.integration.conftest import Api
from tests.integration.webhooks._receiver import Received, Receiver
from tests.integration.webhooks.conftest import SECRET, start_dispatcher


async def finish(
    api: Api, receiver_url: str, status: str = "COMPLETED", **create: Any
) -> dict[str, Any]:
    task = await api.create("email", {"n": 1}, webhook=receiver_url, **create)
    r = await api.claim(commands=["email"])
    assert r.status_code == 200 and r.json()["id"] == task["id"]
    body: dict[str, Any] = {"status": status, "leaseId": r.json()["leaseId"]}
    if status == "COMPLETED":
        body.update(result={"ok": True}, artifacts=[{"name": "log", "url": "https://x/log"}])
    else:
        body["error"] = "boom"
    r = await api.call("POST", f"/tasks/{task['id']}/result", api.worker, body)
    assert r.status_code == 200, r.text
    return task


async def task_of(api: Api, task_id: str) -> dict[str, Any]:
    r = await api.call("GET", f"/tasks/{task_id}", api.producer)
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5) -> None:
    """Re-check a store-side condition until it holds (bounded; fails after timeout)."""
    with trio.fail_after(timeout):
        while not await check():
            await trio.sleep(0.01)


def assert_signed(req: Received) -> None:
    ts = req.headers["x-codeq-timestamp"]
    assert abs(int(ts) - time.time()) < 5
    assert webhooks.verify(SECRET, req.body, ts, req.headers["x-codeq-signature"])
    assert not webhooks.verify("other-secret", req.body, ts, req.headers["x-codeq-signature"])


async def test_completed_task_calls_back_signed(api: Api, nursery: trio.Nursery) -> None:
    receiver = await Receiver(200).start(nursery)
    await start_dispatcher(nursery, api.ctx)
    task = await finish(api, receiver.url)
    (req,) = await receiver.wait_for(1)
    assert req.method == "POST" and req.path == "/hook"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"] == f"codeqd/{__version__}"
    assert req.headers["x-codeq-attempt"] == "1"
    assert_signed(req)
    doc = req.json()
    # No "error": a field with no value is left out, never null (codeQ's omitempty).
    assert doc == {
        "taskId": task["id"],
        "eventType": "email",
        "status": "COMPLETED",
        "result": {"ok": True},
        "artifacts": [{"name": "log", "url": "https://x/log"}],
        "completedAt": doc["completedAt"],
    }
    assert doc["completedAt"].endswith("Z")

    async def delivered() -> bool:
        t = await task_of(api, task["id"])
        return t.get("webhookStatus") == "DELIVERED"

    await eventually(delivered)
    t = await task_of(api, task["id"])
    assert t["webhookAttempts"] == 1 and "webhookError" not in t
    assert await Outbox(api.ctx.store).pending() == 0


async def test_failed_dead_lettered_and_cancelled_tasks_call_back(
    api: Api, nursery: trio.Nursery
) -> None:
    receiver = await Receiver(204).start(nursery)
    await start_dispatcher(nursery, api.ctx)
    failed = await finish(api, receiver.url, status="FAILED")
    dead = await api.create("email", {}, webhook=receiver.url, maxAttempts=1)
    claimed = (await api.claim(commands=["email"])).json()
    assert claimed["id"] == dead["id"]
    r = await api.call("POST", f"/tasks/{dead['id']}/nack", api.worker, {"reason": "x"})
    assert r.json() == {"status": "dlq", "delaySeconds": 0}
    cancelled = await api.create("email", {}, webhook=receiver.url, delaySeconds=60)
    r = await api.call("DELETE", f"/tasks/{cancelled['id']}", api.producer)
    assert r.status_code == 200
    got = {req.json()["taskId"]: req.json() for req in await receiver.wait_for(3)}
    for tid, error in ((failed["id"], "boom"), (dead["id"], "MAX_ATTEMPTS")):
        assert got[tid] == {  # no "result": left out, never null
            "taskId": tid,
            "eventType": "email",
            "status": "FAILED",
            "error": error,
            "artifacts": [],
            "completedAt": got[tid]["completedAt"],
        }
    assert got[cancelled["id"]]["status"] == "CANCELLED"
    assert all(doc["eventType"] == "email" for doc in got.values())


async def test_retries_with_backoff_until_a_2xx(api: Api, nursery: trio.Nursery) -> None:
    answers = iter([500, "close", 200])
    receiver = await Receiver(lambda _req: next(answers)).start(nursery)
    await start_dispatcher(nursery, api.ctx, base_backoff=0.1, max_backoff=1.0)
    task = await finish(api, receiver.url)
    reqs = await receiver.wait_for(3)
    assert [r.headers["x-codeq-attempt"] for r in reqs] == ["1", "2", "3"]
    gaps = [b.at - a.at for a, b in itertools.pairwise(reqs)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2, gaps  # base, then base * 2
    assert all(r.body == reqs[0].body for r in reqs)
    for r in reqs:
        assert_signed(r)

    async def delivered() -> bool:
        return (await task_of(api, task["id"])).get("webhookStatus") == "DELIVERED"

    await eventually(delivered)
    assert (await task_of(api, task["id"]))["webhookAttempts"] == 3


async def test_gives_up_after_max_attempts_and_records_it(api: Api, nursery: trio.Nursery) -> None:
    receiver = await Receiver(503).start(nursery)
    await start_dispatcher(nursery, api.ctx, max_attempts=3)
    task = await finish(api, receiver.url)
    await receiver.wait_for(3)

    async def failed() -> bool:
        return (await task_of(api, task["id"])).get("webhookStatus") == "FAILED"

    await eventually(failed)
    t = await task_of(api, task["id"])
    assert t["webhookAttempts"] == 3 and t["webhookError"] == "HTTP 503"
    assert t["status"] == "COMPLETED"
    assert await Outbox(api.ctx.store).pending() == 0
    assert len(receiver.requests) == 3


async def test_timeout_redirect_and_closed_connection_are_failed_attempts(
    api: Api, nursery: trio.Nursery
) -> None:
    hang = await Receiver("hang").start(nursery)
    redirect = await Receiver(302).start(nursery)
    closer = await Receiver("close").start(nursery)
    await start_dispatcher(nursery, api.ctx, max_attempts=1, timeout=0.3)
    ids = {
        name: (await finish(api, r.url))["id"]
        for name, r in (("hang", hang), ("redirect", redirect), ("close", closer))
    }

    async def all_failed() -> bool:
        return all([(await task_of(api, i)).get("webhookStatus") == "FAILED" for i in ids.values()])

    await eventually(all_failed)
    errors = {name: (await task_of(api, i))["webhookError"] for name, i in ids.items()}
    assert errors["hang"] == "timed out after 0.3s"
    assert errors["redirect"] == "HTTP 302"
    assert errors["close"].startswith("RemoteProtocolError")
    assert len(redirect.requests) == 1  # the Location was not followed


async def test_two_dispatchers_on_one_store_send_each_attempt_once(
    api: Api, nursery: trio.Nursery, redis_url: str
) -> None:
    receiver = await Receiver(200).start(nursery)
    await start_dispatcher(nursery, api.ctx)
    async with connect(api.ctx.config, redis_url) as other_store, trio.open_nursery() as inner:
        other = Context(
            config=api.ctx.config, store=other_store, hub=api.ctx.hub, auth=api.ctx.auth
        )
        await start_dispatcher(inner, other)
        n = 80
        tasks = [await api.create("email", {"i": i}, webhook=receiver.url) for i in range(n)]
        claimed = [(await api.claim(commands=["email"])).json() for _ in range(n)]
        async with trio.open_nursery() as reporters:
            for t in claimed:
                reporters.start_soon(
                    api.call,
                    "POST",
                    f"/tasks/{t['id']}/result",
                    api.worker,
                    {"status": "COMPLETED", "result": {}},
                )
        await receiver.wait_for(n, timeout=30)
        await eventually(lambda: _outbox_empty(api), timeout=30)
        inner.cancel_scope.cancel()
    attempts = Counter(
        (req.json()["taskId"], req.headers["x-codeq-attempt"]) for req in receiver.requests
    )
    assert {task_id for task_id, _ in attempts} == {t["id"] for t in tasks}
    assert max(attempts.values()) == 1  # no attempt was sent by both dispatchers


async def _outbox_empty(api: Api) -> bool:
    return await Outbox(api.ctx.store).pending() == 0


async def test_hanging_receiver_does_not_slow_the_api(api: Api, nursery: trio.Nursery) -> None:
    receiver = await Receiver("hang").start(nursery)
    await start_dispatcher(nursery, api.ctx, concurrency=8, timeout=30.0)
    for _ in range(20):  # more hanging callbacks than the dispatcher has slots
        await finish(api, receiver.url)
    await receiver.wait_for(8)
    slowest = 0.0
    for _ in range(20):
        started = time.monotonic()
        await finish(api, receiver.url)
        slowest = max(slowest, time.monotonic() - started)
    assert slowest < 0.5, slowest
    assert len(receiver.requests) == 8  # bounded concurrency: the rest wait their turn


async def test_the_callback_carries_the_trace_context_of_the_create(
    api: Api, nursery: trio.Nursery
) -> None:
    receiver = await Receiver(200).start(nursery)
    await start_dispatcher(nursery, api.ctx)
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = await api.call(
        "POST",
        "/tasks",
        api.producer,
        {"command": "traced", "payload": {}, "webhook": receiver.url},
        headers={"traceparent": parent, "tracestate": "a=1,b=2"},
    )
    task = r.json()
    claimed = (await api.claim(commands=["traced"])).json()
    await api.call(
        "POST",
        f"/tasks/{task['id']}/result",
        api.worker,
        {"status": "COMPLETED", "result": {}, "leaseId": claimed["leaseId"]},
    )
    untraced = await finish(api, receiver.url)
    got = {req.json()["taskId"]: req.headers for req in await receiver.wait_for(2)}
    # Tracing off: the stored context as it was sent.
    assert (got[task["id"]]["traceparent"], got[task["id"]]["tracestate"]) == (parent, "a=1,b=2")
    assert "traceparent" not in got[untraced["id"]] and "tracestate" not in got[untraced["id"]]


def outbox_looks() -> float:
    """Outbox claims so far in this process (the store-call histogram's count)."""
    metrics.flush()
    sample = REGISTRY.get_sample_value(
        "codeq_store_call_duration_seconds_count", {"script": "outbox_claim"}
    )
    return sample or 0.0


async def test_only_a_queued_callback_wakes_the_dispatcher(api: Api, nursery: trio.Nursery) -> None:
    receiver = await Receiver(200).start(nursery)
    start = outbox_looks()
    await start_dispatcher(nursery, api.ctx, interval=60.0)  # no idle look in this test
    with trio.fail_after(5):  # its first look (the first round with a sender ready)
        while outbox_looks() < start + 1:
            await trio.sleep(0.01)
    # Quiet: nothing runs for 50 ms, so no store call is in flight (a reply takes < 1 ms).
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    before = outbox_looks()
    for _ in range(5):  # five tasks done without a callback: no reason to look
        await api.create("plain", {})
        t = (await api.claim(commands=["plain"])).json()
        body = {"status": "COMPLETED", "result": {}, "leaseId": t["leaseId"]}
        r = await api.call("POST", f"/tasks/{t['id']}/result", api.worker, body)
        assert r.status_code == 200
    await api.call("DELETE", f"/tasks/{(await api.create('plain', {}))['id']}", api.producer)
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert outbox_looks() == before
    # A task done with a callback wakes it at once (its idle look is 60 s away).
    task = await finish(api, receiver.url)
    with trio.fail_after(5):
        (req,) = await receiver.wait_for(1)
    assert req.json()["taskId"] == task["id"]
    assert outbox_looks() > before


async def test_a_task_done_without_a_callback_does_not_wake_the_dispatcher(api: Api) -> None:
    d = Dispatcher(api.ctx, Live(cfgmod.DispatcherConfig()))
    try:
        d.inbox.drain()  # the Resync every new inbox starts with
        assert not d.inbox.offer(TaskDone((("t", "a"),), callback=False))
        assert d.inbox.pending() == 0
        assert d.inbox.offer(TaskDone((("t", "a"), ("t", "b")), callback=True))
        assert d.inbox.offer(Resync(True))
        assert d.inbox.pending() == 2
    finally:
        api.ctx.store.wakeups.remove(d.inbox)
