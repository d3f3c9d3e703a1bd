"""End-to-end helpers: an httpx client speaking to a real daemon process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.api import ApiCalls
from tests.conftest import Daemon


class Client(ApiCalls):
    """Calls the daemon's API with dev tokens for each role."""

    def __init__(self, daemon: Daemon, http: httpx.AsyncClient) -> None:
        self.daemon = daemon
        self.base = daemon.base
        self.http = http
        self.producer = daemon.token("producer", sub="prod-1")
        self.worker = daemon.token("worker", sub="worker-1")
        self.admin = daemon.token("admin", sub="admin-1")

    async def complete(
        self, task: dict[str, Any], result: Any = None, token: str | None = None
    ) -> httpx.Response:
        return await self.call(
            "POST",
            f"/tasks/{task['id']}/result",
            token or self.worker,
            {"status": "COMPLETED", "result": result or {}, "leaseId": task.get("leaseId")},
        )

    async def _metric(self, name: str, **labels: str) -> float:
        """A sample summed over ingress processes (``/metrics``), 0 when absent."""
        text = (await self.http.get(f"{self.base}/metrics")).text
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    async def wait_parked(self, n: int, timeout: float = 10) -> None:
        """Until ``n`` long-polls are parked: past their first, empty look at the queues
        and waiting for a wake-up (the ``codeq_long_poll_waiters`` gauge counts exactly
        those). A waiter registers before it looks, so a task created after this
        reaches it only by a wake-up, or by the poll fallback, which the wake-up tests
        set far beyond their bounds."""
        parked = 0.0
        with trio.move_on_after(timeout):
            while True:
                parked = await self._metric("codeq_long_poll_waiters")
                if parked >= n:
                    return
                await trio.sleep(0.01)
        raise AssertionError(f"{n} long-polls not parked within {timeout} s: {parked:g} waiting")

    async def get(self, task_id: str) -> Any:
        r = await self.call("GET", f"/tasks/{task_id}", self.producer)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[Client]:
    async with httpx.AsyncClient(timeout=40) as http:
        yield Client(daemon, http)
