"""/metrics after a scripted workload: exact counters, summed over ingress processes."""

from __future__ import annotations

from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Daemon
from tests.e2e.conftest import Client


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: dict[Any, float], name: str, **labels: str) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


_CREATE = "/v1/codeq/tasks"
_HTTP_COUNT = "codeq_http_request_duration_seconds_count"


async def test_counters_are_exact_across_processes(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(
        {"actors": {"ingress": {"processes": 2}, "metrics": {"interval": "100ms"}}}
    )
    # No keep-alive: requests spread over both ingress processes.
    async with httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
    ) as http:
        c = Client(d, http)
        r = await c.call(
            "POST",
            "/workers/subscriptions",
            c.worker,
            {"callbackUrl": "http://127.0.0.1:9/", "eventTypes": ["m1"]},
        )
        assert r.status_code == 200
        for i in range(5):
            await c.create("m1", {"i": i})
        m2 = [await c.create("m2", {}) for _ in range(2)]
        claimed = [(await c.claim(commands=["m1"])).json() for _ in range(3)]
        for t in claimed[:2]:
            assert (await c.complete(t)).status_code == 200
        r = await c.call(
            "POST",
            f"/tasks/{claimed[2]['id']}/result",
            c.worker,
            {"status": "FAILED", "error": "bad input"},
        )
        assert r.status_code == 200
        assert (await c.call("DELETE", f"/tasks/{m2[0]['id']}", c.producer)).status_code == 200

        # Every count below, summed over both processes. Each process hands its counts
        # over within metrics.FLUSH_SECONDS (the one that renders /metrics, at once), and
        # depths are sampled: so wait until a sample shows them all, then check each.
        expected: list[tuple[str, dict[str, str], float]] = [
            ("codeq_queue_depth", {"command": "m1", "queue": "ready"}, 2),
            ("codeq_queue_depth", {"command": "m2", "queue": "ready"}, 1),
            ("codeq_subscriptions_active", {"command": "m1"}, 1),
            ("codeq_task_created_total", {"command": "m1"}, 5),
            ("codeq_task_created_total", {"command": "m2"}, 2),
            ("codeq_task_claimed_total", {"command": "m1"}, 3),
            ("codeq_task_completed_total", {"command": "m1", "status": "COMPLETED"}, 2),
            ("codeq_task_completed_total", {"command": "m1", "status": "FAILED"}, 1),
            ("codeq_task_completed_total", {"command": "m2", "status": "CANCELLED"}, 1),
            ("codeq_task_processing_latency_seconds_count", {}, 3),
            ("codeq_dlq_depth", {"command": "m1"}, 0),
            (_HTTP_COUNT, {"method": "POST", "route": _CREATE, "status": "202"}, 7),
            # Single creates go through the writer's group commit (create_batch.lua): one
            # store call each here, since they were sent one after another.
            ("codeq_store_call_duration_seconds_count", {"script": "create_batch"}, 7),
        ]
        m: dict[Any, float] = {}
        with trio.move_on_after(10):
            while True:
                m = samples((await http.get(f"{d.base}/metrics")).text)
                if all(value(m, name, **labels) == want for name, labels, want in expected):
                    break
                await trio.sleep(0.05)  # polls: depths are sampled, counts flushed each second
    for name, labels, want in expected:
        assert value(m, name, **labels) == want, (name, labels)
