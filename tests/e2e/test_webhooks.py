"""Webhooks through the real daemon process: at-least-once across kill -9, one delivery
per attempt with two daemons on one store, and a worker notification."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import trio

from codeqd import webhooks
from tests.conftest import Daemon, RedisServer
from tests.e2e.conftest import Client
from tests.integration.webhooks._receiver import Receiver

SECRET = "e2e-hmac-secret"


async def complete_with_webhook(c: Client, url: str, command: str = "job") -> dict[str, Any]:
    task = await c.create(command, {"n": 1}, webhook=url)
    r = await c.claim(commands=[command])
    assert r.status_code == 200 and r.json()["id"] == task["id"]
    assert (await c.complete(r.json(), {"done": True})).status_code == 200
    return task


async def webhook_status(c: Client, task_id: str, want: str, timeout: float = 10) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            t = await c.get(task_id)
            if t.get("webhookStatus") == want:
                return t
            await trio.sleep(0.05)  # polls the daemon (another process): no event to await


async def test_callback_is_delivered_after_kill_9_mid_delivery(
    daemon_factory: Any, nursery: trio.Nursery
) -> None:
    answers = iter(["hang"])
    receiver = await Receiver(lambda _req: next(answers, 200)).start(nursery)
    d: Daemon = daemon_factory(
        {
            "store": {"appendfsync": "always"},
            "webhooks": {"hmac_secret": SECRET, "deny_private_networks": False},
            "actors": {"dispatcher": {"timeout": "1s", "base_backoff": "50ms"}},
        }
    )
    async with httpx.AsyncClient(timeout=30) as http:
        c = Client(d, http)
        task = await complete_with_webhook(c, receiver.url)
        await receiver.wait_for(1)  # the daemon is mid-send: the receiver holds the request
        d.stop(kill=True)
        await trio.to_thread.run_sync(d.start)
        first, second = await receiver.wait_for(2, timeout=15)
        assert first.json()["taskId"] == second.json()["taskId"] == task["id"]
        assert (first.headers["x-codeq-attempt"], second.headers["x-codeq-attempt"]) == ("1", "2")
        assert second.json()["status"] == "COMPLETED" and second.json()["result"] == {"done": True}
        assert webhooks.verify(
            SECRET,
            second.body,
            second.headers["x-codeq-timestamp"],
            second.headers["x-codeq-signature"],
        )
        t = await webhook_status(c, task["id"], "DELIVERED")
        assert t["webhookAttempts"] == 2


async def test_two_daemons_on_one_store_deliver_each_callback_once(
    daemon_factory: Any, redis_server: RedisServer, nursery: trio.Nursery
) -> None:
    redis_server.flush()
    receiver = await Receiver(200).start(nursery)
    dev_secret = "two-daemons-dev-secret-0123456789abcdef"
    shared = {
        "store": {"mode": "external", "url": redis_server.url},
        "auth": {"dev_secret": dev_secret},
        "webhooks": {"hmac_secret": SECRET, "deny_private_networks": False},
    }
    a: Daemon = daemon_factory(shared)
    b: Daemon = daemon_factory(shared)
    a.dev_secret = b.dev_secret = dev_secret  # one token works on both
    n = 30
    async with httpx.AsyncClient(timeout=30) as http:
        ca, cb = Client(a, http), Client(b, http)
        tasks = [await ca.create("job", {"i": i}, webhook=receiver.url) for i in range(n)]
        async with trio.open_nursery() as workers:
            for i in range(n):
                c = ca if i % 2 else cb

                async def work(c: Client = c) -> None:
                    r = await c.claim(commands=["job"])
                    assert r.status_code == 200
                    assert (await c.complete(r.json())).status_code == 200

                workers.start_soon(work)
        await receiver.wait_for(n, timeout=20)
        for t in tasks:
            got = await webhook_status(ca, t["id"], "DELIVERED")
            assert got["webhookAttempts"] == 1
    counts = Counter(
        (req.json()["taskId"], req.headers["x-codeq-attempt"]) for req in receiver.requests
    )
    assert {task_id for task_id, _ in counts} == {t["id"] for t in tasks}
    assert max(counts.values()) == 1


async def test_subscriber_is_notified_by_the_daemon(
    daemon_factory: Any, nursery: trio.Nursery
) -> None:
    receiver = await Receiver(200).start(nursery)
    d: Daemon = daemon_factory(
        {
            "webhooks": {
                "hmac_secret": SECRET,
                "public_url": "https://codeq.example.test/",
                "deny_private_networks": False,
            }
        }
    )
    async with httpx.AsyncClient(timeout=30) as http:
        c = Client(d, http)
        r = await c.call(
            "POST",
            "/workers/subscriptions",
            c.worker,
            {"callbackUrl": receiver.url, "eventTypes": ["job"]},
        )
        assert r.status_code == 200
        await c.create("job", {})
        (req,) = await receiver.wait_for(1)
        doc = req.json()
        assert doc["eventType"] == "job" and doc["queueDepth"] == 1
        assert doc["claimUrl"] == "https://codeq.example.test/v1/codeq/tasks/claim"
        assert webhooks.verify(
            SECRET, req.body, req.headers["x-codeq-timestamp"], req.headers["x-codeq-signature"]
        )
