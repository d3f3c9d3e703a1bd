"""What one request or connection can cost: header size, idle keep-alive, slow clients,
long-poll waiters, lease length. (Body size and payload depth: test_http_bad_input.)"""

from __future__ import annotations

from pathlib import Path

import trio

from tests.integration.auth.conftest import serving
from tests.integration.conftest import Api, make_config


async def _open(api: Api) -> trio.SocketStream:
    host, port = api.base.removeprefix("http://").rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def _read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_oversized_headers_are_refused(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config = make_config(tmp_path, limits={"header_bytes": 4096})
    async with serving(nursery, config, redis_url) as api:
        r = await api.http.get(f"{api.base}/v1/codeq/tasks/x", headers={"X-Big": "a" * 8000})
        assert r.status_code == 431 and r.json()["code"] == "headers_too_large"
        # Headers still arriving past the limit: hypercorn answers 431 and hangs up.
        stream = await _open(api)
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000)
        with trio.fail_after(5):
            answer = await _read_until_closed(stream)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
        r = await api.http.get(f"{api.base}/healthz", headers={"X-Small": "a" * 1000})
        assert r.status_code == 200


async def test_idle_keep_alive_is_closed_after_keep_alive_timeout(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    # request_timeout is long so that only the keep-alive timeout can close the connection.
    ingress = {"bind": "127.0.0.1:0", "keep_alive_timeout": "300ms", "request_timeout": "60s"}
    config = make_config(tmp_path, actors={"ingress": ingress})
    async with serving(nursery, config, redis_url) as api:
        for path in ("/healthz", "/v1/codeq/tasks/missing"):  # a plain and an error answer
            idle = await _open(api)
            await idle.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            with trio.fail_after(10):  # the server closes the idle connection, not the client
                assert b"HTTP/1.1 " in await _read_until_closed(idle)


async def test_slow_requests_are_closed(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    """Headers that never end are cut by the keep-alive timeout (hypercorn counts a
    connection as idle until a whole request head has arrived); a body that stops
    arriving gets 408 after the request timeout, and the connection is closed."""
    ingress = {"bind": "127.0.0.1:0", "keep_alive_timeout": "300ms", "request_timeout": "60s"}
    config = make_config(tmp_path, actors={"ingress": ingress})
    async with serving(nursery, config, redis_url) as api:
        slow = await _open(api)
        await slow.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never end
        with trio.fail_after(10):
            await _read_until_closed(slow)
    ingress = {"bind": "127.0.0.1:0", "keep_alive_timeout": "60s", "request_timeout": "1s"}
    config = make_config(tmp_path, actors={"ingress": ingress})
    async with serving(nursery, config, redis_url) as api:
        slow = await _open(api)
        await slow.send_all(
            b"POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + api.producer.encode() + b"\r\n"
            b'Content-Length: 100\r\n\r\n{"command": '  # the rest of the body never comes
        )
        with trio.fail_after(10):
            answer = await _read_until_closed(slow)
        assert answer.startswith(b"HTTP/1.1 408") and b'"code":"request_timeout"' in answer, answer


async def test_idle_keep_alive_does_not_hold_shutdown(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    """Shutdown closes idle keep-alive connections at once instead of waiting out the
    grace (60 s here) for the client to hang up."""
    ingress = {"bind": "127.0.0.1:0", "keep_alive_timeout": "60s", "request_timeout": "60s"}
    config = make_config(tmp_path, actors={"ingress": ingress}, shutdown={"grace_seconds": 60})
    async with serving(nursery, config, redis_url) as api:
        idle = await _open(api)
        await idle.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await idle.receive_some(65536)
        assert first.startswith(b"HTTP/1.1 200"), first[:80]
        api.ctx.shutting_down.set()
        with trio.fail_after(10):
            await _read_until_closed(idle)


async def test_long_poll_waiters_are_capped(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config = make_config(tmp_path, actors={"ingress": {"bind": "127.0.0.1:0", "max_waiters": 1}})
    async with serving(nursery, config, redis_url) as api:
        statuses: list[int] = []
        answered = trio.Event()

        async def wait_for_work() -> None:
            statuses.append((await api.claim(commands=["idle"], waitSeconds=10)).status_code)
            answered.set()

        nursery.start_soon(wait_for_work)
        with trio.fail_after(5):
            while api.ctx.hub.waiting < 1:  # until the first long-poll is registered
                await trio.sleep(0.01)  # polls: the hub has no event for its count
        r = await api.claim(commands=["idle"], waitSeconds=1)
        assert r.status_code == 429 and r.headers["Retry-After"]
        assert r.json()["operation"] == "claim"
        assert (await api.claim(commands=["idle"])).status_code == 204  # no wait: not capped
        await api.create("idle", {})
        with trio.fail_after(5):
            await answered.wait()
        assert statuses == [200]


async def test_lease_seconds_capped_by_config(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config = make_config(
        tmp_path, limits={"max_lease_seconds": 600}, tasks={"default_lease_seconds": 60}
    )
    async with serving(nursery, config, redis_url) as api:
        await api.create("l", {})
        r = await api.claim(commands=["l"], leaseSeconds=601)
        assert r.status_code == 400 and "leaseSeconds" in r.json()["error"]
        claimed = (await api.claim(commands=["l"], leaseSeconds=600)).json()
        r = await api.call(
            "POST", f"/tasks/{claimed['id']}/heartbeat", api.worker, {"extendSeconds": 601}
        )
        assert r.status_code == 400 and "extendSeconds" in r.json()["error"]


async def test_refused_request_with_unread_body_does_not_stall_the_connection(api: Api) -> None:
    # Regression (found by the fuzz tests): a request refused before its body was read
    # left the body on the kept-alive connection and the next request on it hung.
    for _ in range(6):
        with trio.fail_after(5):
            r = await api.http.post(
                f"{api.base}/v1/codeq/admin/queues/q/pause",
                content=b'{"a": 1}',
                headers={"Authorization": f"Bearer {api.producer}"},
            )
        assert r.status_code == 403
    big = b"x" * (100 * 1024)
    for _ in range(3):
        with trio.fail_after(5):
            r = await api.http.post(
                f"{api.base}/v1/codeq/tasks/claim",
                content=big,
                headers={"Authorization": f"Bearer {api.producer}"},
            )
        assert r.status_code == 403


async def test_keep_alive_connection_answers_until_it_is_closed(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    """Idle longer than request_timeout but within keep_alive_timeout, a connection
    still answers its next request: the read timeout must not leave an open socket
    that nobody reads (a client's request on it would hang until the keep-alive close)."""
    ingress = {"bind": "127.0.0.1:0", "keep_alive_timeout": "6s", "request_timeout": "1s"}
    config = make_config(tmp_path, actors={"ingress": ingress})
    async with serving(nursery, config, redis_url) as api:
        conn = await _open(api)

        async def healthz() -> bytes:
            await conn.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            with trio.fail_after(3):
                while b'{"status":"ok"}' not in answer and (chunk := await conn.receive_some()):
                    answer += chunk
            return answer

        assert (await healthz()).startswith(b"HTTP/1.1 200")
        await trio.sleep(2)  # the scenario: idle past request_timeout, within keep-alive
        assert (await healthz()).startswith(b"HTTP/1.1 200")
        # Nor does request_timeout cut a long-poll that waits longer than it.
        assert (await api.claim(commands=["nothing"], waitSeconds=2)).status_code == 204
