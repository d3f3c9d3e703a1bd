"""Worker-availability notifications: the notifier actor in-process, real receivers."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import trio

from codeqd import webhooks
from tests.integration.conftest import Api
from tests.integration.webhooks._receiver import Receiver
from tests.integration.webhooks.conftest import SECRET, start_notifier, worker_token

PATH = "/workers/subscriptions"


async def subscribe(api: Api, url: str, token: str | None = None, **body: Any) -> str:
    r = await api.call(
        "POST", PATH, token or api.worker, {"callbackUrl": url, "minIntervalSeconds": 0, **body}
    )
    assert r.status_code == 200, r.text
    return r.json()["subscriptionId"]  # type: ignore[no-any-return]


async def settled(notifier: Any) -> None:
    """Until the notifier has handled every wake-up so far and nothing is in flight."""
    with trio.fail_after(5):
        while notifier.pending or notifier.arrived.is_set():
            await notifier.round_done.wait()
        while notifier.in_flight:
            await trio.sleep(0.005)


async def settled_rounds(notifier: Any) -> None:
    with trio.fail_after(5):
        while notifier.pending or notifier.arrived.is_set():
            await notifier.round_done.wait()


async def create_seen(api: Api, notifier: Any, command: str = "email") -> None:
    """Create a task and wait until the notifier has had a round after its wake-up."""
    rounds = notifier.rounds
    await api.create(command, {})
    with trio.fail_after(5):
        while notifier.rounds == rounds:
            await notifier.round_done.wait()


async def cycle(api: Api, notifier: Any, command: str = "email") -> None:
    """Empty -> non-empty (a create) and back to empty (a claim), handled by the notifier."""
    await create_seen(api, notifier, command)
    r = await api.claim(commands=[command])
    assert r.status_code == 200
    await settled(notifier)


async def test_fanout_notifies_every_subscription_once_per_transition(
    api: Api, nursery: trio.Nursery
) -> None:
    a, b = await Receiver().start(nursery), await Receiver().start(nursery)
    notifier = await start_notifier(nursery, api.ctx)
    await subscribe(api, a.url, eventTypes=["email"])
    await subscribe(api, b.url)
    await api.create("email", {})
    (req,) = await a.wait_for(1)
    await b.wait_for(1)
    doc = req.json()
    assert set(doc) == {
        "eventType",
        "available",
        "queueDepth",
        "claimUrl",
        "sentAt",
        "notificationId",
    }
    assert doc["eventType"] == "email" and doc["available"] is True
    assert doc["queueDepth"] == 1 and doc["claimUrl"] == "/v1/codeq/tasks/claim"
    assert webhooks.verify(
        SECRET, req.body, req.headers["x-codeq-timestamp"], req.headers["x-codeq-signature"]
    )
    # Not empty before: no new notification.
    await create_seen(api, notifier)
    await settled(notifier)
    assert len(a.requests) == 1 and len(b.requests) == 1
    # Another command: only the wildcard subscription hears of it.
    await api.create("sms", {})
    await b.wait_for(2)
    await settled(notifier)
    assert len(a.requests) == 1 and b.requests[1].json()["eventType"] == "sms"
    assert a.requests[0].json()["notificationId"] != b.requests[0].json()["notificationId"]


async def test_group_round_robin_one_per_event(api: Api, nursery: trio.Nursery) -> None:
    receivers = [await Receiver().start(nursery) for _ in range(3)]
    notifier = await start_notifier(nursery, api.ctx)
    for r in receivers:
        await subscribe(api, r.url, deliveryMode="group", groupId="pool")
    lone = await Receiver().start(nursery)
    await subscribe(api, lone.url, deliveryMode="group", groupId="other")
    for _ in range(6):
        await cycle(api, notifier)
    assert [len(r.requests) for r in receivers] == [2, 2, 2]
    assert len(lone.requests) == 6


async def test_hash_mode_keeps_a_queue_on_one_subscriber(api: Api, nursery: trio.Nursery) -> None:
    receivers = [await Receiver().start(nursery) for _ in range(3)]
    notifier = await start_notifier(nursery, api.ctx)
    for r in receivers:
        await subscribe(api, r.url, deliveryMode="hash", groupId="h")
    for _ in range(4):
        await cycle(api, notifier, "email")
    counts = sorted(len(r.requests) for r in receivers)
    assert counts == [0, 0, 4]


async def test_min_interval_throttles_a_subscription(api: Api, nursery: trio.Nursery) -> None:
    slow, fast = await Receiver().start(nursery), await Receiver().start(nursery)
    notifier = await start_notifier(nursery, api.ctx)
    await subscribe(api, slow.url, minIntervalSeconds=1)
    await subscribe(api, fast.url)
    await cycle(api, notifier)
    first = slow.requests[0].at
    await cycle(api, notifier)
    await cycle(api, notifier)
    assert len(slow.requests) == 1 and len(fast.requests) == 3
    with trio.fail_after(5):  # transitions keep coming; one gets through after the interval
        while len(slow.requests) < 2:
            await cycle(api, notifier)
    # The interval runs from the choice, before the first request travelled.
    assert slow.requests[1].at - first >= 0.9
    assert len(fast.requests) > 3


async def test_dedup_window_notifies_a_queue_once(api: Api, nursery: trio.Nursery) -> None:
    r = await Receiver().start(nursery)
    notifier = await start_notifier(nursery, api.ctx, dedup_window=30.0)
    await subscribe(api, r.url)
    await cycle(api, notifier)
    await cycle(api, notifier)
    assert len(r.requests) == 1


async def test_dead_and_hanging_subscribers_do_not_delay_others_or_the_api(
    api: Api, nursery: trio.Nursery
) -> None:
    hang = await Receiver("hang").start(nursery)
    fine = await Receiver().start(nursery)
    notifier = await start_notifier(nursery, api.ctx, timeout=30.0)
    await subscribe(api, hang.url)
    await subscribe(api, "http://127.0.0.1:9/refused")  # nothing listens there
    await subscribe(api, fine.url)
    slowest = 0.0
    for i in range(5):
        started = time.monotonic()
        await api.create("email", {})
        slowest = max(slowest, time.monotonic() - started)
        await fine.wait_for(i + 1, timeout=2)
        started = time.monotonic()
        r = await api.claim(commands=["email"])
        assert r.status_code == 200
        slowest = max(slowest, time.monotonic() - started)
        await settled_rounds(notifier)
    assert slowest < 0.5
    assert len(hang.requests) == 1  # one slot at most for a hanging subscriber; rest dropped
    assert len(fine.requests) == 5


async def test_queue_becomes_non_empty_by_promotion_and_requeue(
    api: Api, nursery: trio.Nursery
) -> None:
    r = await Receiver().start(nursery)
    notifier = await start_notifier(nursery, api.ctx)
    await subscribe(api, r.url)
    task = await api.create("email", {}, delaySeconds=0)
    await r.wait_for(1)
    claimed = (await api.claim(commands=["email"])).json()
    await settled(notifier)
    rr = await api.call(
        "POST", f"/tasks/{task['id']}/abandon", api.worker, {"leaseId": claimed["leaseId"]}
    )
    assert rr.status_code == 200
    await r.wait_for(2)  # requeue
    await api.claim(commands=["email"])
    await settled(notifier)
    delayed = await api.create("email", {}, runAt="2000-01-01T00:00:00Z")  # past: ready now
    await r.wait_for(3)
    assert delayed["status"] == "PENDING"
    assert all(q.json()["eventType"] == "email" for q in r.requests)
    assert Counter(q.json()["queueDepth"] for q in r.requests) == {1: 3}


async def test_other_tenants_subscriptions_hear_nothing(api: Api, nursery: trio.Nursery) -> None:
    mine, theirs = await Receiver().start(nursery), await Receiver().start(nursery)
    notifier = await start_notifier(nursery, api.ctx)
    await subscribe(api, mine.url)
    await subscribe(api, theirs.url, worker_token(api.secret, tenant="other"))
    await cycle(api, notifier)
    assert len(mine.requests) == 1 and theirs.requests == []
