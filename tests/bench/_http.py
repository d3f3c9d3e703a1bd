"""A minimal HTTP/1.1 keep-alive client on trio sockets, for load generation only.

httpx spends more CPU per request than the server under test (its pool,
models and h11 state machine), and the generator shares a 2-core machine with
the daemon, so a request here is one pre-built byte string out and one
Content-Length-framed response in. It speaks only to codeqd and hypercorn.
"""

from __future__ import annotations

from typing import Any

import orjson
import trio


class Connection:
    """One keep-alive connection; reopened when the server closes it between requests
    (hypercorn does after ``keep_alive_max_requests``, 1000 by default)."""

    def __init__(self, stream: trio.SocketStream, host: str, port: int) -> None:
        self.stream = stream
        self.host = host
        self.port = port
        self.buf = b""

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(await trio.open_tcp_stream(host, port), host, port)

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send a pre-built request (see ``build``); returns (status, body)."""
        try:
            await self.stream.send_all(raw)
            return await self.receive_response()
        except (ConnectionError, trio.BrokenResourceError):
            if self.buf:
                raise
        # Closed before answering: the request was not processed; send it again.
        await self.stream.aclose()
        self.stream = await trio.open_tcp_stream(self.host, self.port)
        await self.stream.send_all(raw)
        return await self.receive_response()

    async def receive_response(self) -> tuple[int, bytes]:
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += await self._receive()
        head = buf[:end]
        status = int(head[9:12])
        length = 0
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = lower.find(b"\r\n", at + 2)
            length = int(lower[at + 17 : stop if stop > 0 else len(lower)])
        body_start = end + 4
        while len(buf) < body_start + length:
            buf += await self._receive()
        self.buf = buf[body_start + length :]
        return status, buf[body_start : body_start + length]

    async def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, bytes]:
        return await self.send(build(method, path, body, token, self.host))

    async def _receive(self) -> bytes:
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        return data


def build(
    method: str, path: str, body: Any = None, token: str | None = None, host: str = "127.0.0.1"
) -> bytes:
    """A request as bytes, built once and sent many times to keep the generator's cost down."""
    data = b"" if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(data)}"]
    if data:
        head.append("Content-Type: application/json")
    if token:
        head.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data
