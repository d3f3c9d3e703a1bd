"""Server bugs found while building the client, kept as failing tests for the server's owners."""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.conftest import Daemon


@pytest.mark.xfail(
    reason="server bug: after a 404/405 routing answer to a request with a body, the next "
    "request on the same kept-alive connection sometimes never gets an answer (hypercorn "
    "keeps the unread body?); the client probes extension routes with Connection: close",
    strict=False,
)
async def test_a_404_or_405_leaves_the_kept_alive_connection_usable(shared_daemon: Daemon) -> None:
    headers = {"Authorization": f"Bearer {shared_daemon.token('producer')}"}
    body = {"tasks": [{"command": "x", "payload": {"pad": "y" * 100}}]}
    async with httpx.AsyncClient(base_url=shared_daemon.base, timeout=10) as http:
        for _ in range(200):
            r = await http.post("/v1/codeq/no/such/route", json=body, headers=headers)
            assert r.status_code in (404, 405)
            with trio.fail_after(2):  # an answer takes milliseconds; this one never comes
                await http.get("/healthz")
