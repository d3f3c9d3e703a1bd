"""Create, claim and result served straight from ASGI (``codeqd/http/_fast.py``) answer
exactly as the Quart routes do: the same requests, good and bad, sent over raw
connections to a daemon with ``actors.ingress.fast_routes`` on and to one with it off,
get the same status, error body and headers, and leave the connection open or closed
alike."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import structlog
import trio
import trio.testing

from tests.integration.auth.conftest import serving
from tests.integration.auth.test_authorization import SCOPES, dev_jwt
from tests.integration.conftest import Api, make_config

# Headers whose values differ from one answer to the next (or one server to the other).
_VARYING = {b"date", b"server", b"content-length"}
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Raw:
    """One keep-alive HTTP/1.1 connection, spoken byte for byte (hypercorn's answers
    always carry Content-Length, or have no body)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _more(self) -> bytes:
        chunk = await self.stream.receive_some(65536)
        self.buffer += chunk
        return chunk

    async def response(self) -> dict[str, Any]:
        """The next answer: status, headers (without the varying ones) and body;
        ``closed`` when the server ended the connection after it."""
        while b"\r\n\r\n" not in self.buffer:
            assert await self._more(), "connection closed before an answer"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        all_headers = dict(line.lower().split(b": ", 1) for line in lines)
        length = int(all_headers.get(b"content-length", b"0"))
        while len(self.buffer) < length:
            assert await self._more(), "connection closed inside a body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        closed = all_headers.get(b"connection") == b"close"
        if closed:
            with trio.fail_after(5):
                assert await self._more() == b""  # the server did close it
        return {
            "status": status,
            "headers": {
                k.decode(): v.decode("latin-1")
                for k, v in all_headers.items()
                if k not in _VARYING and k != b"x-request-id"
            },
            "request_id": all_headers.get(b"x-request-id", b"").decode(),
            "body": _shape(body),
            "closed": closed,
            "doc": orjson.loads(body) if body else None,  # kept out of the comparison
        }


def _shape(body: bytes) -> Any:
    """An error body whole; a task by its keys and the fields no two tasks differ in."""
    if not body:
        return None
    doc = orjson.loads(body)
    if "code" in doc:
        if doc.get("code") == "internal":
            doc["error"] = "..."
        return doc
    return {
        k: v if k in ("command", "status", "payload", "ok") else type(v).__name__
        for k, v in doc.items()
    }


def request(
    path: str,
    token: str | None,
    body: bytes | None,
    *,
    headers: str = "",
    length: int | None = None,
) -> bytes:
    head = f"POST /v1/codeq{path} HTTP/1.1\r\nHost: x\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {length or len(body)}\r\n"
    return (head + headers + "\r\n").encode() + (body or b"")


def get(path: str, token: str | None, headers: str = "") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET /v1/codeq{path} HTTP/1.1\r\nHost: x\r\n{auth}{headers}\r\n".encode()


@asynccontextmanager
async def connected(api: Api) -> AsyncIterator[Raw]:
    url = urlsplit(api.base)
    stream = await trio.open_tcp_stream(url.hostname or "127.0.0.1", url.port or 80)
    async with stream:
        yield Raw(stream)


async def exchange(api: Api, *requests: bytes) -> list[dict[str, Any]]:
    """Each request on one connection, in turn; the answers."""
    out = []
    async with connected(api) as conn:
        for req in requests:
            await conn.send(req)
            out.append(await conn.response())
            if out[-1]["closed"]:
                break
    return out


async def conversation(api: Api, command: str) -> dict[str, list[dict[str, Any]]]:
    """The same script of requests, every answer kept by name."""
    # Each server's script runs in a tenant of its own: they share one redis-server.
    p = api.token("producer", sub="prod-1", tenant=command)

    def worker(scopes: list[str], events: list[str] | None = None, sub: str = "worker-1") -> str:
        claims = {"aud": ["codeq-worker"], "tenantId": command, "scope": " ".join(scopes)}
        return dev_jwt(api, sub=sub, eventTypes=events or ["*"], **claims)

    w = worker(SCOPES)
    other = worker(SCOPES, sub="worker-2")
    no_scope = worker(["codeq:heartbeat"], sub="worker-3")
    task = orjson.dumps({"command": command, "payload": {"n": 1}})
    claim = orjson.dumps({"commands": [command], "leaseSeconds": 60})
    big = b'{"command": "' + command.encode() + b'", "payload": "' + b"x" * 5000 + b'"}'
    out: dict[str, list[dict[str, Any]]] = {}
    out["create"] = await exchange(api, request("/tasks", p, task, headers="X-Request-Id: r-1\r\n"))
    out["create_no_token"] = await exchange(
        api, request("/tasks", None, task), request("/tasks", p, task)
    )
    out["create_bad_token"] = await exchange(api, request("/tasks", "nope", task))
    out["create_worker_token"] = await exchange(api, request("/tasks", w, task))
    out["create_malformed"] = await exchange(api, request("/tasks", p, b"{oops"))
    out["create_empty"] = await exchange(api, request("/tasks", p, b""))
    out["create_array"] = await exchange(api, request("/tasks", p, b"[1]"))
    out["create_no_command"] = await exchange(api, request("/tasks", p, b'{"payload": 1}'))
    out["create_big_int"] = await exchange(
        api, request("/tasks", p, b'{"command": "a", "priority": 123456789012345678901}')
    )
    out["create_text_plain"] = await exchange(
        api,
        b"POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + p.encode()
        + b"\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
    )
    # Past limits.body_bytes (4 KiB here): 413 and the connection closed.
    out["create_too_large"] = await exchange(api, request("/tasks", p, big))
    # Refused before the body was read: a small body is read and dropped, so the
    # connection carries the next request; a large one closes it.
    out["bad_token_small_body"] = await exchange(
        api, request("/tasks", "nope", b'{"x": "' + b"y" * 2000 + b'"}'), request("/tasks", p, task)
    )
    out["bad_token_large_body"] = await exchange(
        api,
        request("/tasks", "nope", b'{"x": "' + b"y" * 70000 + b'"}'),
        request("/tasks", p, task),
    )
    out["headers_too_large"] = await exchange(
        api, request("/tasks", p, task, headers=f"X-Pad: {'a' * 17000}\r\n")
    )
    out["claim_bad_wait"] = await exchange(api, request("/tasks/claim", w, b'{"waitSeconds": -1}'))
    out["claim_not_object"] = await exchange(api, request("/tasks/claim", w, b'"x"'))
    out["claim_producer_token"] = await exchange(api, request("/tasks/claim", p, claim))
    out["claim_no_scope"] = await exchange(api, request("/tasks/claim", no_scope, claim))
    out["claim_denied_command"] = await exchange(
        api, request("/tasks/claim", worker(SCOPES, ["other"], "w4"), claim)
    )
    out["claim"] = claimed = await exchange(api, request("/tasks/claim", w, claim))
    out["claim_none_left"] = await exchange(
        api, request("/tasks/claim", w, orjson.dumps({"commands": [f"{command}-none"]}))
    )
    out["claim_no_body"] = second = await exchange(api, request("/tasks/claim", w, None))
    task_id = claimed[0]["doc"]["id"]
    # A worker's other reports, on the second task it holds.
    t2, lease2 = second[0]["doc"]["id"], second[0]["doc"]["leaseId"]
    only_result = worker(["codeq:result"], sub="worker-5")
    beat = f"/tasks/{t2}/heartbeat"
    out["heartbeat_empty"] = await exchange(api, request(beat, w, b""))
    out["heartbeat_lease_header"] = await exchange(
        api, request(beat, w, b"{}", headers=f"X-Lease-Id: {lease2}\r\n")
    )
    out["heartbeat_stale_lease"] = await exchange(api, request(beat, w, b'{"leaseId": "stale"}'))
    out["heartbeat_not_object"] = await exchange(api, request(beat, w, b"[1]"))
    out["heartbeat_bad_extend"] = await exchange(api, request(beat, w, b'{"extendSeconds": 0}'))
    out["heartbeat_no_scope"] = await exchange(api, request(beat, only_result, b""))
    out["heartbeat_unknown_task"] = await exchange(
        api, request("/tasks/0190c3a4-0000-7000-8000-000000000000/heartbeat", w, b"")
    )
    out["nack_bad_delay"] = await exchange(
        api, request(f"/tasks/{t2}/nack", w, b'{"delaySeconds": "soon"}')
    )
    out["nack"] = await exchange(
        api, request(f"/tasks/{t2}/nack", w, b'{"reason": "later", "delaySeconds": 0}')
    )
    out["abandon_not_held"] = await exchange(api, request(f"/tasks/{t2}/abandon", w, b""))
    out["unknown_report"] = await exchange(api, request(f"/tasks/{t2}/finish", w, b""))
    ok = orjson.dumps({"status": "COMPLETED", "result": {"ok": True}})
    out["result_unknown_task"] = await exchange(
        api, request("/tasks/0190c3a4-0000-7000-8000-000000000000/result", w, ok)
    )
    out["result_bad_status"] = await exchange(
        api, request(f"/tasks/{task_id}/result", w, b'{"status": "MAYBE"}')
    )
    out["result_not_object"] = await exchange(api, request(f"/tasks/{task_id}/result", w, b"[]"))
    out["result_empty"] = await exchange(api, request(f"/tasks/{task_id}/result", w, b""))
    out["result_stale_lease"] = await exchange(
        api,
        request(
            f"/tasks/{task_id}/result",
            w,
            b'{"status": "COMPLETED", "result": {}, "leaseId": "stale"}',
        ),
    )
    out["result_other_worker"] = await exchange(api, request(f"/tasks/{task_id}/result", other, ok))
    out["result_no_scope"] = await exchange(api, request(f"/tasks/{task_id}/result", no_scope, ok))
    out["result"] = await exchange(api, request(f"/tasks/{task_id}/result", w, ok))
    out["result_again"] = await exchange(api, request(f"/tasks/{task_id}/result", w, ok))
    # The producer's reads: the task, and its result (at once, or waiting for it).
    out["get_task"] = await exchange(api, get(f"/tasks/{t2}", p))
    out["get_task_as_worker"] = await exchange(api, get(f"/tasks/{t2}", w))
    out["get_task_no_token"] = await exchange(api, get(f"/tasks/{t2}", None))
    out["get_task_unknown"] = await exchange(
        api, get("/tasks/0190c3a4-0000-7000-8000-000000000000", p)
    )
    out["get_task_slash"] = await exchange(api, get(f"/tasks/{t2}/", p))
    out["get_task_with_body"] = await exchange(
        api, get(f"/tasks/{t2}", p, "Content-Length: 2\r\n") + b"{}"
    )
    out["get_result_none_yet"] = await exchange(api, get(f"/tasks/{t2}/result", p))
    out["get_result_waited_out"] = await exchange(api, get(f"/tasks/{t2}/result?waitSeconds=1", p))
    out["get_result_bad_wait"] = await exchange(api, get(f"/tasks/{t2}/result?waitSeconds=soon", p))
    out["get_result_undecodable_wait"] = await exchange(
        api, get(f"/tasks/{t2}/result?waitSeconds=%FF", p)
    )
    out["put_tasks"] = await exchange(
        api, b"PUT /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    out["result_trailing_slash"] = await exchange(api, request(f"/tasks/{task_id}/result/", w, ok))
    out["get_result_done"] = await exchange(api, get(f"/tasks/{task_id}/result", p))
    out["get_result_done_long_wait"] = await exchange(
        api, get(f"/tasks/{task_id}/result?waitSeconds=100000", p)
    )
    out["get_result_done_waiting"] = await exchange(
        api, get(f"/tasks/{task_id}/result?waitSeconds=5&waitSeconds=x", p)
    )
    return out


def _config(tmp_path: Path, fast: bool) -> Any:
    return make_config(
        tmp_path / ("fast" if fast else "quart"),
        actors={"ingress": {"bind": "127.0.0.1:0", "fast_routes": fast, "request_timeout": "1s"}},
        limits={"body_bytes": 4096},
    )


async def test_the_fast_routes_answer_as_the_quart_routes_do(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    answers = {}
    for fast in (True, False):
        async with serving(nursery, _config(tmp_path, fast), redis_url) as api:
            with trio.fail_after(30):
                answers[fast] = await conversation(api, f"same-{fast}")
    fast, quart = answers[True], answers[False]
    assert fast.keys() == quart.keys()
    for name in fast:
        # The command names differ on purpose (each server has its own queue).
        assert _neutral(fast[name], "same-True") == _neutral(quart[name], "same-False"), (
            name,
            fast[name],
            quart[name],
        )
    # And the answers are the ones wanted, not merely alike.
    assert [a["status"] for a in fast["create"]] == [202]
    assert fast["create"][0]["request_id"] == quart["create"][0]["request_id"] == "r-1"
    assert all(a["request_id"] for answer in fast.values() for a in answer)
    assert [a["status"] for a in fast["create_no_token"]] == [401, 202]
    assert fast["create_too_large"][0]["status"] == 413 and fast["create_too_large"][0]["closed"]
    assert [a["status"] for a in fast["bad_token_small_body"]] == [401, 202]
    assert fast["bad_token_large_body"][0]["closed"]
    assert fast["headers_too_large"][0]["status"] == 431
    assert fast["claim"][0]["status"] == 200
    assert fast["claim_none_left"][0]["status"] == 204
    assert fast["result_stale_lease"][0]["status"] == 409
    assert fast["result"][0]["status"] == 200
    assert fast["put_tasks"][0]["status"] == 405
    assert [fast[k][0]["status"] for k in ("heartbeat_empty", "heartbeat_lease_header")] == [
        200,
        200,
    ]
    assert fast["heartbeat_stale_lease"][0]["status"] == 409
    assert fast["heartbeat_no_scope"][0]["status"] == 403
    assert fast["nack"][0]["status"] == 200
    assert fast["get_task"][0]["status"] == 200
    assert fast["get_task_slash"][0]["status"] == 404
    assert fast["get_result_waited_out"][0]["body"]["code"] == "result_not_found"
    assert fast["get_result_done_waiting"][0]["status"] == 200


def _neutral(answers: list[dict[str, Any]], command: str) -> bytes:
    kept = [{k: v for k, v in a.items() if k not in ("doc", "request_id")} for a in answers]
    text = orjson.dumps(kept, default=repr, option=orjson.OPT_SORT_KEYS)
    return _UUID.sub(b"ID", text.replace(command.encode(), b"C"))


async def test_a_body_that_stops_arriving_gets_408_on_either_path(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    for fast in (True, False):
        async with (
            serving(nursery, _config(tmp_path, fast), redis_url) as api,
            connected(api) as conn,
        ):
            await conn.send(request("/tasks", api.producer, b'{"comm', length=100))
            with trio.fail_after(10):
                answer = await conn.response()
            assert (answer["status"], answer["body"]["code"], answer["closed"]) == (
                408,
                "request_timeout",
                True,
            ), fast


async def test_a_client_that_goes_away_ends_its_long_poll(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    async with serving(nursery, _config(tmp_path, True), redis_url) as api:
        hub = api.ctx.hub
        async with connected(api) as conn:
            await conn.send(
                request("/tasks/claim", api.worker, b'{"commands": ["gone"], "waitSeconds": 30}')
            )
            with trio.fail_after(10):
                while hub.waiting < 1:
                    await trio.sleep(0.01)
        # The connection is closed: the claim ends at once, not in 30 s...
        with trio.fail_after(10):
            while hub.waiting:
                await trio.sleep(0.01)
        assert hub.registered == 0
        # ...and a task created now goes to a worker that is still there.
        created = await api.create("gone")
        r = await api.claim(commands=["gone"])
        assert r.status_code == 200 and r.json()["id"] == created["id"]


async def test_a_producer_that_goes_away_ends_its_result_wait(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    async with serving(nursery, _config(tmp_path, True), redis_url) as api:
        hub = api.ctx.hub
        task = await api.create("awaited")
        async with connected(api) as conn:
            await conn.send(get(f"/tasks/{task['id']}/result?waitSeconds=30", api.producer))
            with trio.fail_after(10):
                while hub.waiting < 1:
                    await trio.sleep(0.01)
        with trio.fail_after(10):  # ends at once, not in 30 s
            while hub.waiting:
                await trio.sleep(0.01)
        assert hub.registered == 0


async def test_the_request_log_names_the_task_created_or_claimed_on_either_path(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    for fast in (True, False):
        command = f"logged-{fast}"
        async with serving(nursery, _config(tmp_path, fast), redis_url) as api:
            with structlog.testing.capture_logs() as logs:
                created = await api.create(command)
                claimed = await api.claim(commands=[command])
                empty = await api.claim(commands=[command])
                # A request's line is written after its answer is sent: let it be.
                await trio.testing.wait_all_tasks_blocked()
            assert (claimed.status_code, empty.status_code) == (200, 204)
            lines = [
                (e["route"], e["status"], e["task_id"])
                for e in logs
                if e["event"] == "http.request"
            ]
            assert lines == [
                ("/v1/codeq/tasks", 202, created["id"]),
                ("/v1/codeq/tasks/claim", 200, created["id"]),
                ("/v1/codeq/tasks/claim", 204, None),
            ], fast
