"""Records that slipped past validation (stored by an older version, or edited in the
store) are failed deliveries, never a crashed actor: the real supervisor with its real
actors, poison written straight into the store with the real client."""

from __future__ import annotations

from typing import Any

import orjson
import trio

from codeqd import metrics
from codeqd.store._keys import escape_tenant, field
from tests.integration.webhooks._receiver import Receiver
from tests.integration.webhooks.conftest import Supervised, subscribe_as
from tests.integration.webhooks.test_result_callbacks import eventually, task_of

POISON_URL = "http://\u2603.example/x"  # httpx.InvalidURL: "Invalid IDNA hostname"


def counted(kind: str, command: str, outcome: str) -> float:
    return float(metrics.WEBHOOK_DELIVERIES.labels(kind, command, outcome)._value.get())


async def poison_task(s: Supervised, task_id: str, webhook: Any) -> None:
    """Replace the stored task's webhook, bypassing the API's validation."""
    store = s.api.ctx.store
    key = field(escape_tenant("default"), task_id)
    for k in store.keys.all():
        raw = await store.command(store.client.hget, k.task, key)
        if raw:
            meta = orjson.loads(raw)
            meta["webhook"] = webhook
            await store.command(store.client.hset, k.task, {key: orjson.dumps(meta).decode()})
            return
    raise AssertionError(f"task {task_id} not in the store")


async def test_poison_callbacks_end_failed_and_no_actor_restarts(
    supervised: Supervised, nursery: trio.Nursery
) -> None:
    s, api = supervised, supervised.api
    receiver = await Receiver(200).start(nursery)
    failures = counted("result", "poison", "failure")
    poisoned = []
    for bad in (POISON_URL, 12345, "not a url at all"):
        task = await api.create("poison", {}, webhook=receiver.url)
        await poison_task(s, task["id"], bad)
        poisoned.append(task)
    for _ in poisoned:
        r = await api.claim(commands=["poison"])
        assert r.status_code == 200, r.text
        done = await api.call(
            "POST",
            f"/tasks/{r.json()['id']}/result",
            api.worker,
            {"status": "COMPLETED", "result": {}, "leaseId": r.json()["leaseId"]},
        )
        assert done.status_code == 200, done.text
    # A good callback after them still goes out: the dispatcher is alive.
    good = await api.create("poison", {}, webhook=receiver.url)
    r = await api.claim(commands=["poison"])
    await api.call(
        "POST",
        f"/tasks/{good['id']}/result",
        api.worker,
        {"status": "COMPLETED", "result": {}, "leaseId": r.json()["leaseId"]},
    )

    async def all_failed() -> bool:
        got = [await task_of(api, t["id"]) for t in poisoned]
        return all(t.get("webhookStatus") == "FAILED" for t in got)

    await eventually(all_failed, timeout=15)
    (req,) = await receiver.wait_for(1)
    assert req.json()["taskId"] == good["id"]
    first = await task_of(api, poisoned[0]["id"])
    assert first["webhookAttempts"] == 3  # every attempt counted, then FAILED
    assert "InvalidURL" in first["webhookError"] and "IDNA" in first["webhookError"]
    for t in poisoned[1:]:
        got = await task_of(api, t["id"])
        assert got["webhookAttempts"] == 3 and got["webhookError"]
    assert counted("result", "poison", "failure") - failures == 3
    assert s.restarts == {}


async def test_poison_subscription_fails_its_notification_and_no_actor_restarts(
    supervised: Supervised, nursery: trio.Nursery
) -> None:
    s, api = supervised, supervised.api
    store = api.ctx.store
    fine = await Receiver(200).start(nursery)
    bad_id = await subscribe_as(api, "http://example.com/n", eventTypes=["pq"])
    key = store.keys.subs.sub(escape_tenant("default"), bad_id)
    doc = orjson.loads(await store.command(store.client.get, key))
    doc["callbackUrl"] = "http://\u2603.example/n"
    await store.command(store.client.set, key, orjson.dumps(doc), px=60_000)
    failures = counted("queue_ready", "pq", "failure")
    await api.create("pq", {})
    with trio.fail_after(10):
        while counted("queue_ready", "pq", "failure") == failures:
            await trio.sleep(0.01)  # polls the failure counter: no event for it
    # The notifier still works: a good subscription hears of the next transition.
    await subscribe_as(api, fine.url, eventTypes=["pq"])
    assert (await api.claim(commands=["pq"])).status_code == 200
    await api.create("pq", {})
    (req,) = await fine.wait_for(1)
    assert req.json()["eventType"] == "pq"
    assert s.restarts == {}
