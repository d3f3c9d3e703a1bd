"""End-to-end helpers: an httpx client speaking to a real daemon process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

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

    async def get(self, task_id: str) -> Any:
        r = await self.call("GET", f"/tasks/{task_id}", self.producer)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[Client]:
    async with httpx.AsyncClient(timeout=40) as http:
        yield Client(daemon, http)
