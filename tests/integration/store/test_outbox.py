"""The result-callback outbox (``codeqd/store/_outbox.py``): claims read it from its
low-water mark on, never from -inf, and every entry added below the mark is still
claimed when due."""

from __future__ import annotations

from codeqd.store import Store
from codeqd.store._store import now_ms
from tests.integration.store.conftest import new_task

HOOK = "https://example.com/hook"


async def finished(store: Store, at: int) -> str:
    """A task with a webhook, completed at ``at``: one outbox entry scored ``at``."""
    meta, _, _ = await store.create("t", new_task(webhook=HOOK), now=at - 10)
    (claimed,) = await store.claim("t", "w", ["c"], 30, now=at - 5)
    await store.report(
        "t", meta["id"], "w", claimed.meta["leaseId"], "COMPLETED", None, None, [], now=at
    )
    return str(meta["id"])


async def test_entries_added_below_the_outbox_mark_are_still_claimed(store: Store) -> None:
    t0 = now_ms() + 1_000
    a, b = await finished(store, t0 + 20), await finished(store, t0 + 21)
    # One claimed (re-scored to its lease deadline): the mark rises to the other's score.
    (first,), head = await store.outbox.claim(t0 + 100, 10_000, 1)
    assert (first.task_id, head) == (a, t0 + 21)
    # Rescheduled below the mark: claimed with the other when due.
    assert await store.outbox.settle(
        first, "retry", now_ms=t0 + 110, retry_at_ms=t0 + 5, error="HTTP 503", http_status=503
    )
    entries, _ = await store.outbox.claim(t0 + 200, 10_000, 10)
    assert sorted(e.task_id for e in entries) == sorted([a, b])
    # Both retried far ahead: nothing due, and the mark rises to that time...
    for e in entries:
        assert await store.outbox.settle(
            e, "retry", now_ms=t0 + 210, retry_at_ms=t0 + 1_000_000, error="", http_status=503
        )
    assert await store.outbox.claim(t0 + 300, 10_000, 10) == ([], t0 + 1_000_000)
    # ...so a result now lands below it, and is due at once.
    c = await finished(store, t0 + 400)
    entries, head = await store.outbox.claim(t0 + 500, 10_000, 10)
    assert [e.task_id for e in entries] == [c] and head == t0 + 500 + 10_000  # its lease


async def test_a_sweep_finds_an_entry_a_writer_left_below_the_mark(store: Store) -> None:
    """A codeqd from before the mark adds entries without lowering it (a rolling upgrade):
    claims from the mark do not see such an entry, and the next sweep (every
    ``Outbox.SWEEP_SECONDS``, and a process's first claim) sends it."""
    t0 = now_ms() + 1_000
    a = await finished(store, t0 + 20)
    (entry,), _ = await store.outbox.claim(t0 + 100, 10_000, 10)  # the first claim sweeps
    assert entry.task_id == a
    assert await store.outbox.settle(entry, "delivered", now_ms=t0 + 110, http_status=200)
    b = await finished(store, t0 + 120)
    # As if b had come from a writer that leaves the mark where it is, above b.
    await store.client.set(f"{store.keys.shard(0).outbox}:low", str(t0 + 1_000_000))
    assert await store.outbox.claim(t0 + 200, 10_000, 10) == ([], None)  # b unseen
    store.outbox.SWEEP_SECONDS = 0  # this process's next claim sweeps
    entries, _ = await store.outbox.claim(t0 + 300, 10_000, 10)
    assert [e.task_id for e in entries] == [b]
