"""The dashboard's rates (issue 18): per tenant and minute, the transition scripts count
created, completed, failed and dead-lettered tasks in the same step; ``Store.rates``
sums them over shards, oldest minute first, zero-filled."""

from __future__ import annotations

import functools

import pytest

from codeqd.domain.errors import ValidationError
from codeqd.store import Report, Store
from codeqd.store._keys import escape_tenant
from codeqd.store._store import now_ms
from tests.integration.store.conftest import new_task

new = functools.partial(new_task, created_by="alice")


async def test_each_transition_is_counted_in_its_minute(store: Store) -> None:
    # A minute ten minutes ahead, so every task is ready at t0 and the minutes are ours.
    t0 = (now_ms() // 60_000 + 10) * 60_000
    minute = t0 // 60_000
    ids = [(await store.create("t", new(maxAttempts=1), now=t0 + i))[0]["id"] for i in range(6)]
    retried, _, _ = await store.create("t", new(maxAttempts=3), now=t0 + 10)
    await store.create("u", new(), now=t0 + 20)
    claimed = {
        c.meta["id"]: c.meta["leaseId"]
        for c in await store.claim("t", "w1", ["c"], 300, max_tasks=10, now=t0 + 1_000)
    }
    assert set(claimed) == {*ids, retried["id"]}
    for tid in ids[:2]:
        await store.report(
            "t", tid, "w1", claimed[tid], "COMPLETED", None, None, [], now=t0 + 61_000
        )
    await store.report(
        "t", ids[2], "w1", claimed[ids[2]], "FAILED", None, "boom", [], now=t0 + 62_000
    )
    # A nack past maxAttempts dead-letters; one with attempts left does not count.
    assert (await store.nack("t", ids[3], "w1", claimed[ids[3]], 0, "no", now=t0 + 63_000))[
        0
    ] == "dead_lettered"
    nacked = await store.nack(
        "t", retried["id"], "w1", claimed[retried["id"]], 0, "x", now=t0 + 63_000
    )
    assert nacked[0] == "requeued"
    # The last two leases run out (t0 + 301 s): the reaper dead-letters them.
    assert await store.reap_expired(t0 + 302_000) == 2

    rates = await store.rates("t", now=t0 + 302_000)
    assert rates.start == (minute + 5 - 59) * 60_000
    assert len(rates.created) == 60
    assert rates.created[-6:] == [7, 0, 0, 0, 0, 0]
    assert rates.completed[-6:] == [0, 2, 0, 0, 0, 0]
    assert rates.failed[-6:] == [0, 1, 0, 0, 0, 0]
    assert rates.dead_lettered[-6:] == [0, 1, 0, 0, 0, 2]
    assert rates.totals() == {"created": 7, "completed": 2, "failed": 1, "deadLettered": 3}
    # Other tenants: their own counts only.
    other = await store.rates("u", now=t0 + 302_000)
    assert other.totals() == {"created": 1, "completed": 0, "failed": 0, "deadLettered": 0}
    assert other.created[-6] == 1
    nobody = await store.rates("nobody", now=t0 + 302_000)
    assert nobody.totals() == dict.fromkeys(nobody.totals(), 0)
    # A window that ends before the minute sees nothing; 1 minute is the current one.
    assert (await store.rates("t", now=t0 - 60_000)).totals()["created"] == 0
    assert (await store.rates("t", 1, now=t0 + 59_999)).created == [7]

    # Every counter expires: 2 hours after its first count.
    found = 0
    for k in store.keys.all():
        for m in (minute, minute + 1, minute + 5):
            key = k.rate(escape_tenant("t"), m)
            if await store.client.exists([key]):
                found += 1
                assert 7_000 < await store.client.ttl(key) <= 7_200
    assert found >= 3


async def test_batches_are_counted(store: Store) -> None:
    created = await store.create_batch("b", [new(), new(), new()])
    assert all(c[2] for c in created)
    claimed = await store.claim("b", "w1", ["c"], 300, max_tasks=3)
    assert len(claimed) == 3
    reports = [
        Report(c.meta["id"], c.meta["leaseId"], status, None, None, [])
        for c, status in zip(claimed, ["COMPLETED", "COMPLETED", "FAILED"], strict=True)
    ]
    out = await store.report_batch("b", "w1", reports)
    assert not [o for o in out if isinstance(o, Exception)]
    # Real clock: the window (the last hour) holds them whichever minute they fell in.
    rates = await store.rates("b")
    assert rates.totals() == {"created": 3, "completed": 2, "failed": 1, "deadLettered": 0}


@pytest.mark.parametrize("minutes", [0, -1, 121])
async def test_the_window_is_bounded(store: Store, minutes: int) -> None:
    with pytest.raises(ValidationError):
        await store.rates("t", minutes)
