"""A real HTTP receiver for webhook tests: an h11 server on 127.0.0.1 in the test's trio
run that records every request and answers as told (a status, hang, or close)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import h11
import orjson
import trio

Mode = int | str  # a status code, "hang" or "close"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the body was complete

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    def __init__(self, mode: Mode | Callable[[Received], Mode] = 200) -> None:
        self.mode = mode
        self.requests: list[Received] = []
        self._arrived = trio.Event()
        self.port = 0
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self, nursery: trio.Nursery) -> Receiver:
        listeners = await nursery.start(partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1"))
        self.port = listeners[0].socket.getsockname()[1]
        return self

    async def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        """Until ``count`` requests arrived (fails after ``timeout`` seconds)."""
        with trio.fail_after(timeout):
            while len(self.requests) < count:
                await self._arrived.wait()
        return self.requests

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        conn.receive_data(data)
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += bytes(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
                assert request is not None
                got = Received(
                    request.method.decode(),
                    request.target.decode(),
                    {k.decode().lower(): v.decode() for k, v in request.headers},
                    body,
                    time.monotonic(),
                )
                self.requests.append(got)
                self._arrived.set()
                self._arrived = trio.Event()
                mode = self.mode(got) if callable(self.mode) else self.mode
                if mode == "hang":
                    await trio.sleep_forever()
                if mode == "close":
                    return
                assert isinstance(mode, int)
                body_out = b"" if mode in (204, 304) else b"{}"
                headers = [("content-type", "application/json")]
                if body_out:
                    headers.append(("content-length", str(len(body_out))))
                if 300 <= mode < 400:
                    headers.append(("location", f"http://127.0.0.1:{self.port}/elsewhere"))
                await stream.send_all(conn.send(h11.Response(status_code=mode, headers=headers)))
                if body_out:
                    await stream.send_all(conn.send(h11.Data(data=body_out)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                else:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            await stream.aclose()
