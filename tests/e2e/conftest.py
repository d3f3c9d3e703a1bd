"""End-to-end helpers: an httpx client speaking to a real daemon process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import Daemon


class Client:
    """Calls the daemon's API with dev tokens for each role."""

    def __init__(self, daemon: Daemon, http: httpx.AsyncClient) -> None:
        self.daemon = daemon
        self.http = http
        self.producer = daemon.token("producer", sub="prod-1")
        self.worker = daemon.token("worker", sub="worker-1")
        self.admin = daemon.token("admin", sub="admin-1")

    async def call(
        self, method: str, path: str, token: str | None = None, json: Any = None, **kw: Any
    ) -> httpx.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return await self.http.request(
            method, f"{self.daemon.base}/v1/codeq{path}", json=json, headers=headers, **kw
        )

    async def create(self, command: str = "email", payload: Any = None, **fields: Any) -> Any:
        r = await self.call(
            "POST",
            "/tasks",
            self.producer,
            {"command": command, "payload": payload or {}, **fields},
        )
        assert r.status_code == 202, r.text
        return r.json()

    async def claim(self, token: str | None = None, **body: Any) -> httpx.Response:
        return await self.call("POST", "/tasks/claim", token or self.worker, body)

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
