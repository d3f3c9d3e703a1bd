"""Each Lua transition against the real store, including races between claimers."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from codeqd.config import BackoffConfig, Duration
from codeqd.domain.errors import InvalidState, LeaseLost, TaskNotFound
from codeqd.store import Store
from codeqd.store._keys import escape_tenant
from codeqd.store._store import now_ms
from tests.integration.store.conftest import new_task

new = new_task


async def test_fifty_concurrent_claimers_each_task_claimed_once(store: Store) -> None:
    ids = {(await store.create("t", new()))[0]["id"] for _ in range(20)}
    claimed: list[str] = []

    async def claimer(i: int) -> None:
        for task in await store.claim("t", f"w{i}", ["c"], 30):
            claimed.append(task.meta["id"])

    async with trio.open_nursery() as n:
        for i in range(50):
            n.start_soon(claimer, i)
    assert sorted(claimed) == sorted(ids)
    assert (await store.queue_stats("t", "c")).in_progress == 20


async def test_a_claim_naming_a_queue_twice_leases_each_task_once(store: Store) -> None:
    """claim.lua removes what it took from a queue only after its walk (one call per
    queue): a queue named twice is walked once. (HTTP claims arrive de-duplicated.)"""
    ids = {(await store.create("t", new()))[0]["id"] for _ in range(3)}
    claimed = [task.meta["id"] for task in await store.claim("t", "w", ["c", "c"], 30, 5)]
    assert sorted(claimed) == sorted(ids)
    assert (await store.queue_stats("t", "c")).in_progress == 3


async def test_a_claim_reads_queues_in_chunks_and_keeps_priority_then_fifo(store: Store) -> None:
    """claim.lua reads a queue a chunk at a time with the chunk's records (its share of
    the call, then twice the last, never more than the call still needs). Whichever
    queue a task is in and wherever a chunk ends, a claim hands out priority first,
    then FIFO across the queues; an entry whose record is gone is skipped and removed."""
    created: list[tuple[int, int, str]] = []  # (priority, creation order, id)
    plan = [("b", 9)] * 3 + [("c" if i % 5 == 0 else "a", 5) for i in range(45)] + [("d", 0)] * 10
    for order, (command, priority) in enumerate(plan):
        meta, _, _ = await store.create("t", new(command, priority=priority))
        created.append((priority, order, meta["id"]))
    # Five entries at the head of "a" whose records are gone (as a half-repaired crash
    # could leave them): each is dropped as it surfaces, within the call's budget.
    ready_a = store.keys.shard(0).ready(escape_tenant("t"), "a")
    head = await store.client.zrange(ready_a, 0, 0, withscores=True)
    first_score = float(head[0][1])
    await store.client.zadd(ready_a, {f"gone-{i}": first_score - 5 + i for i in range(5)})
    # ...with the index at the lowest of them, as the script that added them left it.
    await store.client.zadd(store.keys.shard(0).avail(escape_tenant("t")), {"a": first_score - 5})

    claimed = await store.claim("t", "w", ["a", "b", "c", "d"], 30, 50)

    expected = [task_id for _, _, task_id in sorted(created, key=lambda c: (-c[0], c[1]))]
    assert [task.meta["id"] for task in claimed] == expected[:50]
    assert await store.client.zcard(ready_a) == 0  # every task of "a" claimed, no entry left
    # The claimable index follows: the emptied queues left it, and "d" is there with the
    # score of its head now (the entry after the two claimed, read with them).
    k = store.keys.shard(0)
    ready_d = await store.client.zrange(k.ready(escape_tenant("t"), "d"), 0, 0, withscores=True)
    index = await store.client.zrange(k.avail(escape_tenant("t")), 0, -1, withscores=True)
    assert [(m, float(sc)) for m, sc in index] == [("d", float(ready_d[0][1]))]
    stats = [await store.queue_stats("t", c) for c in "abcd"]
    assert [(s.ready, s.in_progress) for s in stats] == [(0, 36), (0, 3), (0, 9), (8, 2)]
    assert [t.meta["id"] for t in await store.claim("t", "w", ["d"], 30, 50)] == expected[50:]


async def test_a_claim_reads_on_past_entries_of_the_same_score_across_chunks(
    store: Store,
) -> None:
    """Released tasks go back to the head of their priority with the same score; a claim
    reads a queue from its indexed score on, a chunk at a time, and one that ends inside
    a run of equal scores goes on after the entries of it already read: each task once."""
    ids = [(await store.create("t", new("e")))[0]["id"] for _ in range(10)]
    later = [(await store.create("t", new("f")))[0]["id"] for _ in range(3)]
    held = await store.claim("t", "w", ["e"], 30, 10)
    assert sorted(t.meta["id"] for t in held) == sorted(ids)
    await store.release("t", "w", held)
    ready_e = store.keys.shard(0).ready(escape_tenant("t"), "e")
    scores = {sc for _, sc in await store.client.zrange(ready_e, 0, -1, withscores=True)}
    assert len(scores) == 1  # one score for all ten

    # Two queues: "e"'s first chunk is half the call plus one, so the call reads "e" again
    # from inside its run of equal scores.
    claimed = [t.meta["id"] for t in await store.claim("t", "w", ["e", "f"], 30, 12)]
    assert sorted(claimed[:10]) == sorted(ids) and claimed[10:] == later[:2]
    assert [(s.ready, s.in_progress) for s in [await store.queue_stats("t", c) for c in "ef"]] == [
        (0, 10),
        (1, 2),
    ]


async def test_delayed_task_is_promoted_only_when_due(store: Store) -> None:
    meta, _, _ = await store.create("t", new(delaySeconds=60))
    assert (await store.queue_stats("t", "c")).delayed == 1
    assert await store.promote_due(now_ms()) == 0
    assert await store.claim("t", "w", ["c"], 30) == []
    assert await store.promote_due(now_ms() + 61_000) == 1
    assert await store.promote_due(now_ms() + 61_000) == 0  # no double promotion
    stats = await store.queue_stats("t", "c")
    assert (stats.ready, stats.delayed) == (1, 0)
    assert (await store.claim("t", "w", ["c"], 30))[0].meta["id"] == meta["id"]


async def test_expired_lease_is_retried_then_dead_lettered(store: Store) -> None:
    store.config = dataclasses.replace(
        store.config, backoff=BackoffConfig(policy="fixed", base=Duration(0))
    )
    meta, _, _ = await store.create("t", new(maxAttempts=2))
    await store.claim("t", "w", ["c"], 1)
    assert await store.reap_expired(now_ms()) == 0  # not yet expired
    assert await store.reap_expired(now_ms() + 2_000) == 1
    again, _ = await store.get("t", meta["id"])
    assert again["status"] == "PENDING" and again["error"] == "LEASE_EXPIRED"
    await store.claim("t", "w2", ["c"], 1)
    assert await store.reap_expired(now_ms() + 2_000) == 1
    dead, _ = await store.get("t", meta["id"])
    assert dead["status"] == "FAILED" and dead["error"] == "MAX_ATTEMPTS"
    assert (await store.queue_stats("t", "c")).dlq == 1


async def test_two_reapers_race_without_double_retry(store: Store) -> None:
    for _ in range(30):
        await store.create("t", new())
    await store.claim("t", "w", ["c"], 1, max_tasks=30)
    counts: list[int] = []

    async def reap() -> None:
        counts.append(await store.reap_expired(now_ms() + 5_000))

    async with trio.open_nursery() as n:
        n.start_soon(reap)
        n.start_soon(reap)
    assert sum(counts) == 30
    stats = await store.queue_stats("t", "c")
    assert stats.in_progress == 0 and stats.ready + stats.delayed == 30


async def test_heartbeat_keeps_lease_from_reaper(store: Store) -> None:
    meta, _, _ = await store.create("t", new())
    (task,) = await store.claim("t", "w", ["c"], 1)
    await store.heartbeat("t", meta["id"], "w", task.meta["leaseId"], 600)
    assert await store.reap_expired(now_ms() + 5_000) == 0


async def test_idempotency_key_returns_first_task(store: Store) -> None:
    a, _, created_a = await store.create("t", new(idempotencyKey="k1"))
    b, _, created_b = await store.create("t", new(idempotencyKey="k1"))
    c, _, _ = await store.create("other-tenant", new(idempotencyKey="k1"))
    assert created_a and not created_b and a["id"] == b["id"]
    assert c["id"] != a["id"]
    assert (await store.queue_stats("t", "c")).ready == 1


async def test_tenants_cannot_see_each_other(store: Store) -> None:
    meta, _, _ = await store.create("alice", new())
    with pytest.raises(TaskNotFound):
        await store.get("bob", meta["id"])
    assert await store.claim("bob", "w", ["c"], 30) == []
    with pytest.raises(TaskNotFound):
        await store.cancel("bob", meta["id"])


async def test_cancel_pending_delayed_and_in_progress(store: Store) -> None:
    pending, _, _ = await store.create("t", new())
    delayed, _, _ = await store.create("t", new(delaySeconds=100))
    await store.cancel("t", pending["id"])
    await store.cancel("t", delayed["id"])
    running, _, _ = await store.create("t", new())
    (task,) = await store.claim("t", "w", ["c"], 30)
    await store.cancel("t", running["id"])
    with pytest.raises(InvalidState):
        await store.report("t", running["id"], "w", task.meta["leaseId"], "COMPLETED", {}, None, [])
    stats = await store.queue_stats("t", "c")
    assert (stats.ready, stats.delayed, stats.in_progress) == (0, 0, 0)
    assert await store.promote_due(now_ms() + 200_000) == 0


async def test_stale_lease_cannot_report(store: Store) -> None:
    meta, _, _ = await store.create("t", new())
    (first,) = await store.claim("t", "pool", ["c"], 30)
    await store.abandon("t", meta["id"], "pool", first.meta["leaseId"])
    (second,) = await store.claim("t", "pool", ["c"], 30)
    assert second.meta["leaseId"] != first.meta["leaseId"]
    with pytest.raises(LeaseLost):
        await store.report(
            "t", meta["id"], "pool", first.meta["leaseId"], "COMPLETED", {}, None, []
        )
    await store.report("t", meta["id"], "pool", second.meta["leaseId"], "COMPLETED", {}, None, [])


async def test_paused_queue_hands_out_nothing(store: Store) -> None:
    await store.create("t", new())
    await store.set_paused("t", "c", True)
    assert await store.claim("t", "w", ["c"], 30) == []
    assert (await store.queue_stats("t", "c")).paused
    await store.set_paused("t", "c", False)
    assert len(await store.claim("t", "w", ["c"], 30)) == 1


async def test_cleanup_removes_only_old_terminal_tasks(store: Store) -> None:
    meta, _, _ = await store.create("t", new())
    live, _, _ = await store.create("t", new())
    await store.claim("t", "w", ["c"], 30)
    await store.report("t", meta["id"], "w", None, "COMPLETED", {}, None, [])
    assert await store.cleanup(now_ms() - 60_000, 100) == 0
    assert await store.cleanup(now_ms() + 1, 100) == 1
    with pytest.raises(TaskNotFound):
        await store.get("t", meta["id"])
    await store.get("t", live["id"])
