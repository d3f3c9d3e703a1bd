"""One tenant's worst claim cannot block the store for the others.

The issue: 5,000 tasks over 5,000 commands and one batch claim of 1,000 with an
``eventTypes: ["*"]`` token made one claim script do tasks x queues work; the store
answered BUSY to every tenant. Now every script call is bounded (``store.script_items``
tasks, ``store.claim_queues`` queues) and wildcard claims walk the tenant's index of
non-empty queues. The store's own slow log is the witness: no call may take longer
than 100 ms (the old claim took seconds), while another tenant keeps working.
"""

from __future__ import annotations

import time

import trio

from codeqd.store import Store
from tests.conftest import RedisServer
from tests.integration.conftest import Api

QUEUES = 10_000


async def fill(api: Api, token: str, queues: int) -> None:
    for lo in range(0, queues, 1000):
        tasks = [{"command": f"q{i:05d}", "payload": {"i": i}} for i in range(lo, lo + 1000)]
        r = await api.call("POST", "/tasks/batch", token, {"tasks": tasks})
        assert r.status_code == 202, r.text


async def test_worst_claim_over_10000_queues_stays_bounded(
    api: Api, redis_server: RedisServer
) -> None:
    big_p = api.token("producer", sub="big-p", tenant="big")
    big_w = api.token("worker", sub="big-w", tenant="big", events=["*"])
    other_p = api.token("producer", sub="small-p", tenant="small")
    other_w = api.token("worker", sub="small-w", tenant="small", events=["job"])
    await fill(api, big_p, QUEUES)
    redis_server.command("CONFIG", "SET", "slowlog-log-slower-than", "100000")  # µs
    redis_server.command("SLOWLOG", "RESET")

    latencies: list[float] = []
    failures: list[str] = []
    claimed: list[dict[str, object]] = []
    done = trio.Event()

    async def other_tenant() -> None:
        while not done.is_set():
            for method, path, token, body in (
                ("POST", "/tasks", other_p, {"command": "job", "payload": {}}),
                ("POST", "/tasks/claim", other_w, {"commands": ["job"]}),
            ):
                started = time.perf_counter()
                r = await api.call(method, path, token, body)
                latencies.append(time.perf_counter() - started)
                if r.status_code not in (200, 202):
                    failures.append(f"{path}: {r.status_code} {r.text}")

    async def worst_claims() -> None:
        try:
            for _ in range(3):
                r = await api.call("POST", "/tasks/claim/batch", big_w, {"maxTasks": 1000})
                assert r.status_code == 200, r.text
                claimed.extend(r.json()["tasks"])
        finally:
            done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_tenant)
        nursery.start_soon(worst_claims)

    assert failures == []
    # FIFO across the tenant's queues: the first 3,000 created, in order, each once.
    assert [t["payload"]["i"] for t in claimed] == list(range(3000))  # type: ignore[index]
    slow = redis_server.integer("SLOWLOG", "LEN")
    assert slow == 0, redis_server.command("SLOWLOG", "GET", "3")
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
    print(f"other tenant: {len(latencies)} requests during the claims, p99 {p99 * 1000:.1f} ms")

    # The rest is still there for the next claims, and the index knows every queue.
    stats = await api.call("GET", "/admin/queues?limit=1000", api.token("admin", tenant="big"))
    assert stats.status_code == 200 and len(stats.json()) == 1000
    assert stats.headers["X-Next-Cursor"] == "q00999"


async def test_wildcard_claim_sees_only_claimable_queues(store: Store) -> None:
    """A wildcard claim does not look at empty or paused queues, however many exist."""
    from codeqd.domain.task import NewTask

    def task(cmd: str, priority: int = 0) -> NewTask:
        return NewTask(cmd, b"{}", priority, 5, 0, None, None)

    for i in range(300):
        await store.create("t", task(f"empty{i}"))
    drained = await store.claim("t", "w", None, 30, 300)
    assert len(drained) == 300
    await store.create("t", task("paused", 9))
    await store.set_paused("t", "paused", True)
    await store.create("t", task("low", 1))
    await store.create("t", task("high", 5))
    got = await store.claim("t", "w", None, 30, 10)
    assert [c.meta["command"] for c in got] == ["high", "low"]
    await store.set_paused("t", "paused", False)
    got = await store.claim("t", "w", None, 30, 10)
    assert [c.meta["command"] for c in got] == ["paused"]
    index = store.keys.shard(0).avail("t")
    assert await store.client.zcard(index) == 0
