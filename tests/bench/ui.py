"""``make bench`` scenario e (continued): dashboard pages over a queue of 1M pending tasks.

The pages read counts (one stats script per shard) and pages of the DLQ by cursor,
never a whole queue, so their time should not grow with the queue; the issue's target
is under 300 ms server time. Timed at the client (one keep-alive connection), which
adds well under a millisecond to the server's time.
"""

from __future__ import annotations

import statistics
from typing import Any

import httpx

from codeqd.auth import mint_dev_token
from tests.bench._procs import Daemon, now


async def ui_pages(res: Any, d: Daemon, command: str, pending_label: str, samples: int) -> None:
    admin = mint_dev_token(d.secret, "admin", sub="bench-admin", ttl=3600)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{d.port}", timeout=30) as http:
        r = await http.post("/ui/login", data={"token": admin})
        assert r.status_code == 303, r.text
        created = await http.post(
            "/v1/codeq/tasks",
            json={"command": command, "payload": {}},
            headers={"Authorization": f"Bearer {d.producer}"},
        )
        task_id = created.json()["id"]
        pages = {
            "overview": "/ui/",
            "queue": f"/ui/queues/{command}?tenant=default",
            "task": f"/ui/tasks/{task_id}?tenant=default",
        }
        for name, path in pages.items():
            ms: list[float] = []
            for _ in range(samples):
                t = now()
                r = await http.get(path)
                ms.append((now() - t) * 1000)
                assert r.status_code == 200, r.text
            ms.sort()
            res.add(
                f"ui_{name}_p50",
                f"e  dashboard {name} page p50, {pending_label} pending",
                statistics.median(ms),
                "ms",
                "{:.1f}",
            )
            res.add(
                f"ui_{name}_max",
                f"e  dashboard {name} page max, {pending_label} pending",
                ms[-1],
                "ms",
                "{:.1f}",
            )
