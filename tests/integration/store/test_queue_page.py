"""A queue's tasks by state, paged by cursor (``Store.queue_page``)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from codeqd.domain.errors import ValidationError
from codeqd.domain.ids import shard_of
from codeqd.store import Store, connect
from codeqd.store._store import now_ms
from tests.integration.conftest import make_config
from tests.integration.store.conftest import new_task

new = functools.partial(new_task, max_attempts=1)


async def all_pages(store: Store, state: Any, limit: int) -> list[str]:
    ids: list[str] = []
    cursor: str | None = ""
    pages = 0
    while cursor is not None:
        items, cursor = await store.queue_page("t", "c", state, cursor, limit)
        ids += [i.meta["id"] for i in items]
        pages += 1
        assert pages < 100
    return ids


async def test_each_state_pages_through_the_queue_and_nothing_else(store: Store) -> None:
    ready = [(await store.create("t", new(priority=p % 3)))[0]["id"] for p in range(7)]
    delayed = [(await store.create("t", new(delaySeconds=60 + i)))[0]["id"] for i in range(5)]
    for _ in range(3):  # other queues and tenants in the same shard-wide indexes
        await store.create("t", new("other", delaySeconds=30))
        await store.create("u", new(delaySeconds=30))
    claimed = [c.meta["id"] for c in await store.claim("t", "w", ["c"], 30, 3)]
    await store.create("t", new("other"))
    await store.claim("t", "w", ["other"], 30, 1)
    dead = [c.meta["id"] for c in await store.claim("t", "w", ["c"], 30, 2)]
    for tid in dead:
        await store.nack("t", tid, "w", None, 0, "x")
    left = [t for t in ready if t not in claimed + dead]

    assert sorted(await all_pages(store, "ready", 2)) == sorted(left)
    # A paused queue leaves the claimable index (ready pages start from its score there)
    # and its ready tasks are listed all the same.
    await store.set_paused("t", "c", True)
    assert sorted(await all_pages(store, "ready", 2)) == sorted(left)
    await store.set_paused("t", "c", False)
    got_delayed = await all_pages(store, "delayed", 2)
    assert sorted(got_delayed) == sorted(delayed)
    assert sorted(await all_pages(store, "in_progress", 2)) == sorted(claimed)
    assert sorted(await all_pages(store, "dlq", 1)) == sorted(dead)

    items, _ = await store.queue_page("t", "c", "in_progress", "", 10)
    assert {i.meta["workerId"] for i in items} == {"w"}
    assert all(i.score == i.meta["leaseUntil"] for i in items)
    items, _ = await store.queue_page("t", "c", "delayed", "", 10)
    assert all(i.score == i.meta["runAt"] for i in items)
    if store.shards == 1:  # within a shard, the index's order: runAt; claim order
        assert await all_pages(store, "delayed", 2) == delayed
        page = await all_pages(store, "ready", 3)
        assert page == [c.meta["id"] for c in await store.claim("t", "w", ["c"], 30, 10)]


async def test_a_bad_cursor_is_refused(store: Store) -> None:
    for bad in ("x", "1", "99.0", "0.-1", "0.1.2", "0." + "9" * 30):
        with pytest.raises(ValidationError):
            await store.queue_page("t", "c", "ready", bad, 10)


async def test_a_scan_bounded_page_comes_back_short_with_a_cursor(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codeqd.store import _store

    monkeypatch.setattr(_store, "SCAN_BUDGET", 4)
    for _ in range(10):
        await store.create("t", new("other", delaySeconds=30))
    mine = (await store.create("t", new(delaySeconds=60)))[0]["id"]
    items, cursor = await store.queue_page("t", "c", "delayed", "", 5)
    assert items == [] and cursor is not None  # 4 entries looked at, none of this queue
    assert await all_pages(store, "delayed", 5) == [mine]


async def test_pages_run_across_shards(tmp_path: Path, redis_url: str) -> None:
    async with connect(make_config(tmp_path, store={"shards": 4}), redis_url) as store:
        await store.init_keyspace()
        ids = {(await store.create("t", new(delaySeconds=60)))[0]["id"] for _ in range(9)}
        assert len({shard_of(t, 4) for t in ids}) > 1
        assert sorted(await all_pages(store, "delayed", 2)) == sorted(ids)
        await store.promote_due(now_ms() + 61_000)
        assert sorted(await all_pages(store, "ready", 4)) == sorted(ids)
