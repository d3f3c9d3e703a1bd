"""The HTTP calls integration and end-to-end tests share: an httpx client bound to a
server's base URL, with dev tokens for each role."""

from __future__ import annotations

from typing import Any

import httpx


class ApiCalls:
    base: str
    http: httpx.AsyncClient
    producer: str
    worker: str
    admin: str

    async def call(
        self, method: str, path: str, token: str | None = None, json: Any = None, **kw: Any
    ) -> httpx.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return await self.http.request(
            method, f"{self.base}/v1/codeq{path}", json=json, headers=headers, **kw
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
