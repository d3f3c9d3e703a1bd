"""Worker-availability notifications: the notifier actor in-process, real receivers."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import structlog
import trio
import trio.testing

from codeqd import config as cfgmod
from codeqd import webhooks
from codeqd.actors import promoter as promoter_actor
from codeqd.actors._outbound import DELIVERIES
from codeqd.actors.notifier import DropLog
from codeqd.live import Live
from codeqd.store import Inbox, QueueWork, SubscriptionsChanged
from codeqd.store._keys import escape_tenant
from codeqd.store._subscriptions import Subscriptions, new_subscription_id
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
        while notifier.pending or notifier.inbox.pending():
            await notifier.round_done.wait()
        while notifier.in_flight:
            await trio.sleep(0.005)  # polls: the notifier has no event for "sends done"


async def settled_rounds(notifier: Any) -> None:
    with trio.fail_after(5):
        while notifier.pending or notifier.inbox.pending():
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
    # Promotion: a delayed task makes the queue claimable only when the promoter moves it.
    promoter = Live(cfgmod.PromoterConfig(interval=cfgmod.Duration(0.05)))
    await nursery.start(promoter_actor.run, api.ctx, promoter)
    task = await api.create("email", {}, delaySeconds=1)
    await settled(notifier)
    assert r.requests == []  # created delayed: nothing to claim, nobody told
    assert (await api.claim(commands=["email"])).status_code == 204
    (req,) = await r.wait_for(1, timeout=5)
    assert req.json()["eventType"] == "email" and req.json()["queueDepth"] == 1
    claimed = (await api.claim(commands=["email"])).json()
    assert claimed["id"] == task["id"]
    await settled(notifier)
    # Requeue: abandon puts it back.
    rr = await api.call(
        "POST", f"/tasks/{task['id']}/abandon", api.worker, {"leaseId": claimed["leaseId"]}
    )
    assert rr.status_code == 200
    await r.wait_for(2)
    await api.claim(commands=["email"])
    await settled(notifier)
    # A runAt in the past is ready at once (no promotion needed).
    past = await api.create("email", {}, runAt="2000-01-01T00:00:00Z")
    await r.wait_for(3)
    assert past["status"] == "PENDING"
    assert all(q.json()["eventType"] == "email" for q in r.requests)
    assert Counter(q.json()["queueDepth"] for q in r.requests) == {1: 3}


async def many_subscriptions(api: Api, tenant: str, url: str, n: int) -> None:
    """``n`` fanout subscriptions of one tenant, written through the store's own script
    (the HTTP caps would stop one worker at 100)."""
    subs = Subscriptions(api.ctx.store)
    for i in range(n):
        doc = {
            "id": new_subscription_id(),
            "tenantId": tenant,
            "workerId": f"w-{i}",
            "callbackUrl": url,
            "eventTypes": ["*"],
            "deliveryMode": "fanout",
            "groupId": "",
            "minIntervalSeconds": 0,
            "createdAt": 0,
        }
        await subs.put(tenant, doc, 600_000, max_per_worker=10, max_per_tenant=10_000)


async def test_a_tenant_with_many_subscriptions_does_not_starve_another(
    api: Api, nursery: trio.Nursery
) -> None:
    """Tenant A: 300 subscriptions whose receiver hangs. Tenant B's one subscriber still
    hears of every one of its 5 transitions, promptly; A's excess is dropped and logged
    in a bounded number of lines."""
    hang, mine = await Receiver("hang").start(nursery), await Receiver().start(nursery)
    notifier = await start_notifier(nursery, api.ctx, timeout=30.0)
    await many_subscriptions(api, "tenant-a", hang.url, 300)
    await subscribe(api, mine.url)
    a_producer = api.token("producer", sub="prod-a", tenant="tenant-a")
    a_worker = worker_token(api.secret, tenant="tenant-a")
    dropped = DELIVERIES.labels("queue_ready", "email", "dropped")._value.get()
    with structlog.testing.capture_logs() as logs:
        for i in range(5):
            r = await api.call("POST", "/tasks", a_producer, {"command": "email", "payload": {}})
            assert r.status_code == 202
            await settled_rounds(notifier)
            started = time.monotonic()
            await api.create("email", {})
            await mine.wait_for(i + 1, timeout=3)
            assert time.monotonic() - started < 1.5
            assert (await api.claim(a_worker, commands=["email"])).status_code == 200
            assert (await api.claim(commands=["email"])).status_code == 200
            await settled_rounds(notifier)
    assert len(mine.requests) == 5
    # A never held more than its share of the sending slots.
    assert 0 < len(hang.requests) <= notifier.live.value.tenant_concurrency
    drops = DELIVERIES.labels("queue_ready", "email", "dropped")._value.get() - dropped
    assert drops >= 300 * 5 - 256 - 16  # everything beyond A's queue and slots
    lines = [e for e in logs if e["event"] == "notification.dropped"]
    assert 1 <= len(lines) <= 2  # the first at once, then one per 10 s with the count
    assert lines[0]["count"] >= 1 and lines[0]["tenant"] == "tenant-a"


async def test_dropped_log_is_one_line_per_interval_with_the_count(
    api: Api, nursery: trio.Nursery
) -> None:
    clockless = DropLog(every=3600)
    with structlog.testing.capture_logs() as logs:
        for i in range(1000):
            clockless.add("subscriber_busy", "t", "email", f"sub-{i}")
        clockless.flush()
    assert [(e["event"], e["count"]) for e in logs] == [
        ("notification.dropped", 1),
        ("notification.dropped", 999),
    ]
    assert logs[1]["reasons"] == {"subscriber_busy": 999}


async def test_other_tenants_subscriptions_hear_nothing(api: Api, nursery: trio.Nursery) -> None:
    mine, theirs = await Receiver().start(nursery), await Receiver().start(nursery)
    notifier = await start_notifier(nursery, api.ctx)
    await subscribe(api, mine.url)
    await subscribe(api, theirs.url, worker_token(api.secret, tenant="other"))
    await cycle(api, notifier)
    assert len(mine.requests) == 1 and theirs.requests == []


def watch_hints(api: Api) -> Inbox:
    """An inbox offered every queue's work and change of subscriptions the notifier is
    offered, by the listener in the same pass."""
    return api.ctx.store.wakeups.inbox("test", (QueueWork, SubscriptionsChanged), own="none")


async def offered(seen: Inbox, kind: type) -> None:
    """Until ``seen`` has been offered a hint of ``kind``."""
    with trio.fail_after(5):
        while not isinstance(await seen.get(), kind):
            pass


async def test_a_tenant_without_subscriptions_does_not_wake_the_notifier_until_one_comes(
    api: Api, nursery: trio.Nursery
) -> None:
    receiver = await Receiver().start(nursery)
    notifier = await start_notifier(nursery, api.ctx)
    seen = watch_hints(api)

    await create_seen(api, notifier)  # a round learns (and caches) that there is none
    await api.claim(commands=["email"])
    await settled(notifier)
    rounds = notifier.rounds
    await api.create("email", {})
    await offered(seen, QueueWork)
    await trio.testing.wait_all_tasks_blocked()  # a round it woke (no I/O: cached) is done
    assert notifier.inbox.pending() == 0 and not notifier.pending
    assert notifier.rounds == rounds  # refused at the inbox: no wake-up, no round
    # A subscription clears what was cached as it is offered: the next create notifies.
    await api.claim(commands=["email"])
    await subscribe(api, receiver.url, eventTypes=["email"])
    await offered(seen, SubscriptionsChanged)
    await api.create("email", {})
    (req,) = await receiver.wait_for(1)
    assert req.json()["eventType"] == "email"


async def test_a_subscription_list_read_across_a_change_is_not_cached(
    api: Api, nursery: trio.Nursery
) -> None:
    """The notifier reads a tenant's subscriptions; a subscription made while that read
    is out must not leave the older list cached (it would refuse the tenant's hints for
    ``interval``): the read's answer is used once and not kept."""
    receiver = await Receiver().start(nursery)
    notifier = await start_notifier(nursery, api.ctx)
    seen = watch_hints(api)
    principal = await api.ctx.auth.authenticate(f"Bearer {api.producer}", "producer")
    ten = escape_tenant(principal.tenant)  # the tenant as hints and the cache name it
    # The notifier's read of the list, held after the store answered until told to go on.
    read, go = trio.Event(), trio.Event()
    active = notifier.subs.active

    async def held(tenant: str) -> Any:
        subs = await active(tenant)  # the list before the subscription
        read.set()
        await go.wait()
        return subs

    got: list[Any] = []

    async def look() -> None:
        got.append(await notifier._subscriptions(ten, notifier.live.value))

    notifier.subs.active = held
    try:
        nursery.start_soon(look)
        with trio.fail_after(5):
            await read.wait()
        await subscribe(api, receiver.url, eventTypes=["email"])
        await offered(seen, SubscriptionsChanged)
        go.set()
        await trio.testing.wait_all_tasks_blocked()
    finally:
        notifier.subs.active = active
    assert got == [[]]  # the older list answered the read that asked...
    assert ten not in notifier.cache  # ...and was not kept
    await api.create("email", {})
    (req,) = await receiver.wait_for(1)
    assert req.json()["eventType"] == "email"
