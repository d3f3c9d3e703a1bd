"""A refused request with an unread body must not stall its kept-alive connection
(found by the client's tests; fixed by draining small unread bodies in the app)."""

from __future__ import annotations

import httpx
import trio

from tests.conftest import Daemon


async def test_a_404_or_405_leaves_the_kept_alive_connection_usable(daemon: Daemon) -> None:
    shared_daemon = daemon
    headers = {"Authorization": f"Bearer {shared_daemon.token('producer')}"}
    body = {"tasks": [{"command": "x", "payload": {"pad": "y" * 100}}]}
    async with httpx.AsyncClient(base_url=shared_daemon.base, timeout=10) as http:
        for _ in range(200):
            r = await http.post("/v1/codeq/no/such/route", json=body, headers=headers)
            assert r.status_code in (404, 405)
            with trio.fail_after(2):  # an answer takes milliseconds; this one never comes
                await http.get("/healthz")
