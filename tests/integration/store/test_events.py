"""Each task's event list (issue 18): written by the scripts in the same atomic step as
each transition, summarised heartbeats, capped at the last 50, deleted with the task."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from codeqd.domain.events import EVENTS_MAX
from codeqd.store import Store
from codeqd.store._batch import Report
from codeqd.store._keys import escape_tenant
from codeqd.store._store import now_ms
from tests.integration.store.conftest import new_task

new = functools.partial(new_task, created_by="alice")


def rows(events: list[Any]) -> list[tuple[Any, ...]]:
    return [(e.kind, e.at, *e.fields.values()) for e in events]


async def events_key_exists(store: Store, tenant: str, task_id: str) -> bool:
    for k in store.keys.all():
        if await store.client.exists([k.events(escape_tenant(tenant), task_id)]):
            return True
    return False


async def test_lifecycle_writes_the_exact_event_list(store: Store) -> None:
    t0 = now_ms() + 1_000  # after the tasks' runAt (now, when new() parses them)
    meta, _, _ = await store.create("t", new(webhook="https://example.com/hook"), now=t0)
    tid = meta["id"]
    # A pending task has no list: its created event is in its record.
    assert not await events_key_exists(store, "t", tid)
    assert rows(await store.task_events("t", tid)) == [("created", t0, "alice")]
    (c1,) = await store.claim("t", "w1", ["c"], 30, now=t0 + 10)
    for i in range(3):
        await store.heartbeat("t", tid, "w1", c1.meta["leaseId"], 30, now=t0 + 20 + 10 * i)
    assert await store.nack("t", tid, "w1", c1.meta["leaseId"], 0, "smtp down", now=t0 + 50) == (
        "requeued",
        0,
    )
    (c2,) = await store.claim("t", "w2", ["c"], 30, now=t0 + 60)
    await store.report("t", tid, "w2", c2.meta["leaseId"], "FAILED", None, "boom", [], now=t0 + 70)
    entries, _ = await store.outbox.claim(t0 + 80, 10_000, 10)
    (entry,) = [e for e in entries if e.task_id == tid]
    assert await store.outbox.settle(
        entry, "retry", now_ms=t0 + 90, retry_at_ms=t0 + 95, error="HTTP 503", http_status=503
    )
    (entry,) = [e for e in (await store.outbox.claim(t0 + 100, 10_000, 10))[0]]
    assert await store.outbox.settle(entry, "delivered", now_ms=t0 + 110, http_status=200)

    assert rows(await store.task_events("t", tid)) == [
        ("created", t0, "alice"),
        ("claimed", t0 + 10, "w1", c1.meta["leaseId"], 1),
        ("heartbeat", t0 + 20, t0 + 40, 3),
        ("nacked", t0 + 50, "w1", c1.meta["leaseId"], "smtp down", 0),
        ("claimed", t0 + 60, "w2", c2.meta["leaseId"], 2),
        ("result", t0 + 70, "FAILED", "boom"),
        ("callback", t0 + 90, 1, 503, "RETRYING", "HTTP 503"),
        ("callback", t0 + 110, 2, 200, "DELIVERED", ""),
    ]
    assert await store.task_events("other-tenant", tid) == []


async def test_expiry_dead_letter_replay_cancel_and_promote(store: Store) -> None:
    t0 = now_ms() + 1_000  # after the tasks' runAt (now, when new() parses them)
    meta, _, _ = await store.create("t", new(maxAttempts=1), now=t0)
    tid = meta["id"]
    (c1,) = await store.claim("t", "w1", ["c"], 1, now=t0)
    assert await store.reap_expired(t0 + 5_000) == 1
    replayed, _ = await store.dlq_replay("t", "c", [tid], 1, now=t0 + 6_000, by="admin-1")
    assert replayed == [tid]
    await store.cancel("t", tid, now=t0 + 7_000, by="prod-1")
    assert rows(await store.task_events("t", tid)) == [
        ("created", t0, "alice"),
        ("claimed", t0, "w1", c1.meta["leaseId"], 1),
        ("expired", t0 + 5_000, "w1", c1.meta["leaseId"], "LEASE_EXPIRED", -1),
        ("replayed", t0 + 6_000, "admin-1"),
        ("cancelled", t0 + 7_000, "prod-1"),
    ]
    late, _, _ = await store.create("t", new(delaySeconds=60), now=t0)
    assert await store.promote_due(t0 + 61_000 + 10_000) >= 1
    assert [e.kind for e in await store.task_events("t", late["id"])] == ["created", "promoted"]


async def test_the_list_keeps_the_last_fifty_and_heartbeats_stay_one_event(store: Store) -> None:
    meta, _, _ = await store.create("t", new())
    tid = meta["id"]
    for _ in range(30):  # claim + abandon: 2 events a round, attempts given back
        (c,) = await store.claim("t", "w", ["c"], 30)
        for _ in range(5):
            await store.heartbeat("t", tid, "w", c.meta["leaseId"], 30)
        await store.abandon("t", tid, "w", c.meta["leaseId"])
    events = await store.task_events("t", tid)
    assert len(events) == 1 + EVENTS_MAX  # created (from the record), then the last 50
    assert [e.kind for e in events[-3:]] == ["claimed", "heartbeat", "abandoned"]
    assert events[-2].fields["count"] == 5
    assert events[0].kind == "created" and events[0].fields["by"] == "alice"
    assert events[1].kind == "heartbeat"  # 90 recorded, the oldest 40 dropped


async def test_the_list_is_deleted_with_the_task(store: Store) -> None:
    t0 = now_ms() + 1_000  # after the tasks' runAt (now, when new() parses them)
    done, _, _ = await store.create("t", new(), now=t0)
    (c,) = await store.claim("t", "w", ["c"], 30, now=t0)
    await store.heartbeat("t", done["id"], "w", c.meta["leaseId"], 30, now=t0)
    await store.report("t", done["id"], "w", c.meta["leaseId"], "COMPLETED", {}, None, [], now=t0)
    dead, _, _ = await store.create("t", new(maxAttempts=1), now=t0)
    (c,) = await store.claim("t", "w", ["c"], 30, now=t0)
    await store.nack("t", dead["id"], "w", c.meta["leaseId"], 0, "x", now=t0)
    assert await events_key_exists(store, "t", done["id"])
    assert await events_key_exists(store, "t", dead["id"])
    assert await store.cleanup(t0 + 1, 100) == 1
    assert not await events_key_exists(store, "t", done["id"])
    purged, _ = await store.dlq_purge("t", "c", [dead["id"]], 1)
    assert purged == [dead["id"]]
    assert not await events_key_exists(store, "t", dead["id"])


async def test_a_first_claim_and_its_result_keep_no_list(store: Store) -> None:
    """The common life costs no list: the record tells the first claim and the
    worker's result, by either result script; the events read the same."""
    t0 = now_ms() + 1_000
    one, _, _ = await store.create("t", new(), now=t0)
    two, _, _ = await store.create("t", new(), now=t0)
    c1, c2 = await store.claim("t", "w1", ["c"], 30, 2, now=t0 + 10)
    await store.report(
        "t", one["id"], "w1", c1.meta["leaseId"], "COMPLETED", {}, None, [], now=t0 + 20
    )
    (applied,) = await store.report_batch(
        "t", "w1", [Report(two["id"], c2.meta["leaseId"], "FAILED", None, "boom", [])]
    )
    assert isinstance(applied, tuple), applied
    for meta in (one, two):
        assert not await events_key_exists(store, "t", meta["id"])
    assert rows(await store.task_events("t", one["id"])) == [
        ("created", t0, "alice"),
        ("claimed", t0 + 10, "w1", c1.meta["leaseId"], 1),
        ("result", t0 + 20, "COMPLETED", ""),
    ]
    assert rows(await store.task_events("t", two["id"])) == [
        ("created", t0, "alice"),
        ("claimed", t0 + 10, "w1", c2.meta["leaseId"], 1),
        ("result", applied[0]["updatedAt"], "FAILED", "boom"),
    ]


async def test_a_later_event_first_writes_what_the_record_told(store: Store) -> None:
    """A heartbeat, a cancel or a callback after a first claim starts the list with
    the events the record told before the step (the step may overwrite them)."""
    t0 = now_ms() + 1_000
    beat, _, _ = await store.create("t", new(), now=t0)
    gone, _, _ = await store.create("t", new(), now=t0)
    (cb,) = await store.claim("t", "w1", ["c"], 30, now=t0 + 10)
    (cg,) = await store.claim("t", "w2", ["c"], 30, now=t0 + 11)
    await store.heartbeat("t", beat["id"], "w1", cb.meta["leaseId"], 30, now=t0 + 20)
    await store.cancel("t", gone["id"], now=t0 + 30, by="prod-1")
    assert rows(await store.task_events("t", beat["id"])) == [
        ("created", t0, "alice"),
        ("claimed", t0 + 10, "w1", cb.meta["leaseId"], 1),
        ("heartbeat", t0 + 20, t0 + 20, 1),
    ]
    assert rows(await store.task_events("t", gone["id"])) == [
        ("created", t0, "alice"),
        ("claimed", t0 + 11, "w2", cg.meta["leaseId"], 1),
        ("cancelled", t0 + 30, "prod-1"),
    ]


async def test_the_batch_scripts_events_keep_odd_text_exact(store: Store) -> None:
    """claim.lua and result_batch.lua write their events as JSON text they build
    themselves (numbers as integers, strings through cjson), and so does _lib's told
    for the events a record told: a worker id and an error that need escaping, and
    times past 2^32 ms, read back exactly, whether read from the record (no list yet)
    or from the list a later step writes them to."""
    worker = 'w "q" \\ / \u00fcn\u00ef \U0001f680 \n|x'
    error = 'line 1\nline "2" \\ \t \u202e'
    t0 = now_ms() + 1_000
    # Task a: a second claim and its result are appended by the scripts themselves.
    a, _, _ = await store.create("t", new(), now=t0)
    (c1,) = await store.claim("t", worker, ["c"], 30, now=t0 + 10)
    await store.abandon("t", a["id"], worker, c1.meta["leaseId"], now=t0 + 20)
    (c2,) = await store.claim("t", worker, ["c"], 30, now=t0 + 30)
    (applied,) = await store.report_batch(
        "t", worker, [Report(a["id"], c2.meta["leaseId"], "FAILED", None, error, [])]
    )
    assert isinstance(applied, tuple), applied
    done_at = applied[0]["updatedAt"]  # a batch of results runs on the store's clock
    assert done_at > 2**32
    assert rows(await store.task_events("t", a["id"])) == [
        ("created", t0, "alice"),
        ("claimed", t0 + 10, worker, c1.meta["leaseId"], 1),
        ("abandoned", t0 + 20, worker, c1.meta["leaseId"], "", 0),
        ("claimed", t0 + 30, worker, c2.meta["leaseId"], 2),
        ("result", done_at, "FAILED", error),
    ]
    # Task b: told by its record, then written out by the first callback's event.
    b, _, _ = await store.create("t", new(webhook="https://example.com/hook"), now=t0)
    (c,) = await store.claim("t", worker, ["c"], 30, now=t0 + 40)
    (applied,) = await store.report_batch(
        "t", worker, [Report(b["id"], c.meta["leaseId"], "FAILED", None, error, [])]
    )
    assert isinstance(applied, tuple), applied
    told = [
        ("created", t0, "alice"),
        ("claimed", t0 + 40, worker, c.meta["leaseId"], 1),
        ("result", applied[0]["updatedAt"], "FAILED", error),
    ]
    assert not await events_key_exists(store, "t", b["id"])
    assert rows(await store.task_events("t", b["id"])) == told
    entries, _ = await store.outbox.claim(now_ms() + 60_000, 10_000, 10)
    (entry,) = [e for e in entries if e.task_id == b["id"]]
    assert await store.outbox.settle(entry, "delivered", now_ms=t0 + 50, http_status=200)
    assert await events_key_exists(store, "t", b["id"])
    assert rows(await store.task_events("t", b["id"])) == [
        *told,
        ("callback", t0 + 50, 1, 200, "DELIVERED", ""),
    ]


async def test_a_batch_create_records_each_creator(store: Store) -> None:
    tasks = [new(), dataclasses.replace(new(), created_by="bob")]
    created = await store.create_batch("t", tasks)
    by = [(await store.task_events("t", m["id"]))[0].fields["by"] for m, _, _ in created]
    assert by == ["alice", "bob"]


async def test_the_event_is_written_inside_the_transitions_script(
    store: Store, store_kind: str
) -> None:
    """No extra round trip: a claim is one EVALSHA, and what it does to the list is the
    script's own (Redis counts commands a script calls in commandstats). A first claim
    only looks for a list (its record tells it); a second appends to the list."""
    if store_kind != "redis":
        return  # KVRocks' commandstats do not count a script's inner calls
    meta, _, _ = await store.create("t", new())

    async def claim_counts() -> dict[str, int]:
        before = await store.client.info("commandstats")
        (c,) = await store.claim("t", "w", ["c"], 30)
        after = await store.client.info("commandstats")
        await store.abandon("t", meta["id"], "w", c.meta["leaseId"])

        def calls(info: dict[str, Any], cmd: str) -> int:
            return int(info.get(f"cmdstat_{cmd}", {}).get("calls", 0))

        return {
            k.removeprefix("cmdstat_"): calls(after, k.removeprefix("cmdstat_"))
            - calls(before, k.removeprefix("cmdstat_"))
            for k in after
        }

    first = await claim_counts()
    assert first["evalsha"] == 1 and first["exists"] == 1 and first.get("rpush", 0) == 0
    second = await claim_counts()
    assert second["evalsha"] == 1 and second["rpush"] == 1
    assert first.get("lrange", 0) == 0 and second.get("lrange", 0) == 0
