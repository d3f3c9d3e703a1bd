"""Connection upgrades the API does not offer: WebSocket and cleartext HTTP/2 (issue 13,
item 8). Each is refused cleanly by the real daemon, never a 500 or a traceback."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from tests.conftest import Daemon

WS_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def _no_traceback(d: Daemon) -> None:
    log = d.log()
    assert "Traceback" not in log and "http.unhandled_error" not in log, log[-3000:]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/codeq/tasks", 400, "websocket_not_supported"),
        ("/v1/codeq/tasks/claim", 400, "websocket_not_supported"),
        ("/healthz", 400, "websocket_not_supported"),
        ("/v1/codeq/no/such/route", 404, "route_not_found"),
        ("/", 404, "route_not_found"),
    ],
)
async def test_a_websocket_upgrade_gets_a_json_error(
    daemon: Daemon, path: str, status: int, code: str
) -> None:
    headers = {**WS_HEADERS, "Authorization": f"Bearer {daemon.token('worker')}"}
    async with httpx.AsyncClient(base_url=daemon.base, timeout=10) as http:
        r = await http.get(path, headers=headers)
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        assert r.headers["x-request-id"]
        body = r.json()
        assert body["code"] == code
        assert set(body) == {"error", "code", "details"}
        assert path in body["error"]
        # The connection ends with the refusal, and says so.
        assert r.headers["connection"] == "close"
        assert (await http.get("/healthz")).status_code == 200
    _no_traceback(daemon)


def _h2c_upgrade(d: Daemon) -> bytes:
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def test_an_h2c_upgrade_is_ignored_by_default(daemon: Daemon) -> None:
    head = _h2c_upgrade(daemon)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"upgrade: h2c" not in head.lower()
    _no_traceback(daemon)


def test_a_prior_knowledge_http2_preface_is_not_served_as_http2(daemon: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 4"), head  # an HTTP/1.1 error, not an h2 SETTINGS frame
    _no_traceback(daemon)


def test_h2c_can_be_turned_on(daemon_factory: Any) -> None:
    d = daemon_factory({"actors": {"ingress": {"h2c": True}}})
    assert _h2c_upgrade(d).startswith(b"HTTP/1.1 101")


def test_the_single_task_routes_over_http2(daemon_factory: Any) -> None:
    """Create, claim and result (answered straight from ASGI, ``codeqd/http/_fast.py``)
    over prior-knowledge HTTP/2, where a request's headers and body come in frames."""
    d = daemon_factory({"actors": {"ingress": {"h2c": True}}})
    with httpx.Client(base_url=f"{d.base}/v1/codeq", http1=False, http2=True, timeout=10) as c:
        producer = {"Authorization": f"Bearer {d.token('producer')}"}
        worker = {"Authorization": f"Bearer {d.token('worker')}"}
        r = c.post("/tasks", json={"command": "h2", "payload": {"n": 1}}, headers=producer)
        assert (r.http_version, r.status_code) == ("HTTP/2", 202), r.text
        r = c.post("/tasks/claim", json={"commands": ["h2"], "waitSeconds": 1}, headers=worker)
        assert r.status_code == 200 and r.json()["payload"] == {"n": 1}, r.text
        task = r.json()
        r = c.post(f"/tasks/{task['id']}/result", json={"status": "MAYBE"}, headers=worker)
        assert r.status_code == 400 and r.json()["code"] == "validation_error", r.text
        r = c.post(
            f"/tasks/{task['id']}/result",
            json={"status": "COMPLETED", "result": {"ok": True}, "leaseId": task["leaseId"]},
            headers=worker,
        )
        assert r.status_code == 200, r.text
        r = c.post("/tasks/claim", json={"commands": ["h2"], "waitSeconds": 1}, headers=worker)
        assert r.status_code == 204, r.text
    _no_traceback(d)
