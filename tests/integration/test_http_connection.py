"""How a connection is served (``codeqd/http/_hypercorn.py``): each response leaves in
one write, a 100 Continue is not held back, and the keep-alive timer counts only the
time a connection sits idle, however many requests it has carried."""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

import orjson
import pytest
import trio

from tests.integration.auth.conftest import serving
from tests.integration.conftest import Api, make_config
from tests.integration.test_fast_routes import Raw

# struct tcp_info's tcpi_data_segs_in (Linux 4.6+): segments received that carried data.
_DATA_SEGS_IN = 152


def _data_segments_in(stream: trio.SocketStream) -> int:
    info = stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < _DATA_SEGS_IN + 4:
        pytest.skip("this kernel's tcp_info has no tcpi_data_segs_in")
    return int(struct.unpack_from("I", info, _DATA_SEGS_IN)[0])


async def _connect(api: Api) -> Raw:
    host, port = api.base.removeprefix("http://").rsplit(":", 1)
    return Raw(await trio.open_tcp_stream(host, int(port)))


def _request(method: str, path: str, token: str, body: object = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    data = orjson.dumps(body)
    head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


@pytest.mark.skipif(sys.platform != "linux", reason="counts segments with Linux's TCP_INFO")
async def test_each_response_arrives_in_one_segment(api: Api) -> None:
    """hypercorn alone writes the head and the body separately (two segments on
    loopback); codeqd writes them together, whichever path answers."""
    raw = await _connect(api)
    cases = [
        (_request("GET", "/healthz", api.worker), 200),  # Quart
        (_request("GET", "/v1/codeq/nowhere", api.worker), 404),  # Quart, an error
        (
            _request("POST", "/v1/codeq/tasks", api.producer, {"command": "seg", "payload": {}}),
            202,
        ),  # fast
        (_request("GET", "/v1/codeq/tasks/missing", api.producer), 404),  # fast, an error
        (_request("POST", "/v1/codeq/tasks/claim", api.worker, {"commands": ["none"]}), 204),
    ]
    for request, status in cases:
        before = _data_segments_in(raw.stream)
        await raw.send(request)
        with trio.fail_after(10):
            answer = await raw.response()
        assert answer["status"] == status, answer
        assert _data_segments_in(raw.stream) - before == 1, request


async def test_a_100_continue_is_sent_before_the_body_arrives(api: Api) -> None:
    raw = await _connect(api)
    body = orjson.dumps({"command": "continued", "payload": {}})
    await raw.send(
        b"POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Authorization: Bearer " + api.producer.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
    )
    with trio.fail_after(10):
        interim = await raw.response()
    assert interim["status"] == 100, interim
    await raw.send(body)
    with trio.fail_after(10):
        answer = await raw.response()
    assert answer["status"] == 202, answer


async def test_keep_alive_counts_idle_time_only(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    """A long-poll longer than the keep-alive timeout is not cut, the timer starts again
    after every answer, and the connection idle past it is closed by the server."""
    ingress = {"bind": "127.0.0.1:0", "keep_alive_timeout": "300ms", "request_timeout": "60s"}
    config = make_config(tmp_path, actors={"ingress": ingress})
    async with serving(nursery, config, redis_url) as api:
        raw = await _connect(api)
        claim = {"commands": ["quiet"], "waitSeconds": 1}
        for request, status in [
            (_request("GET", "/healthz", api.worker), 200),
            (_request("POST", "/v1/codeq/tasks/claim", api.worker, claim), 204),  # 1 s > 300 ms
            (_request("GET", "/healthz", api.worker), 200),
            (_request("POST", "/v1/codeq/tasks/claim", api.worker, claim), 204),
        ]:
            await raw.send(request)
            with trio.fail_after(10):
                assert (await raw.response())["status"] == status
        with trio.fail_after(10):  # idle now: the server hangs up
            assert await raw.stream.receive_some(65536) == b""
