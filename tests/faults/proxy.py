"""A TCP proxy on loopback that the test controls: added latency, or a black hole.

``async with run_proxy(nursery, target_port) as proxy`` listens on a free
loopback port (``proxy.port``) and forwards each connection to the target.
``proxy.delay`` (seconds, read per chunk, both directions) holds every chunk
that long before passing it on, keeping order and pipelining. ``proxy.blackhole
= True`` makes new and existing connections swallow everything (the peer sees
a store that accepts and never answers); ``proxy.cut()`` closes every
connection at once.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.delay = 0.0
        self.blackhole = False
        self._conns: set[trio.CancelScope] = set()

    def cut(self) -> None:
        for scope in list(self._conns):
            scope.cancel()

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream) -> None:
        send, recv = trio.open_memory_channel[tuple[float, bytes]](math.inf)

        async def forward() -> None:
            async for due, data in recv:
                await trio.sleep_until(due)  # the injected latency
                if not self.blackhole:
                    await dst.send_all(data)

        async with trio.open_nursery() as n:
            n.start_soon(forward)
            async with send:
                while data := await src.receive_some(65536):
                    send.send_nowait((trio.current_time() + self.delay, data))
        await dst.send_eof()

    async def _handle(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._conns.add(scope)
            try:
                async with (
                    client,
                    await trio.open_tcp_stream("127.0.0.1", self.target_port) as upstream,
                    trio.open_nursery() as n,
                ):
                    n.start_soon(self._pump, client, upstream)
                    n.start_soon(self._pump, upstream, client)
            except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # either side went away (raised inside the pair's nursery): drop the pair
            finally:
                self._conns.discard(scope)

    async def serve(self, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await trio.serve_listeners(self._handle, listeners)


@asynccontextmanager
async def run_proxy(nursery: trio.Nursery, target_port: int) -> AsyncIterator[Proxy]:
    """The proxy runs in ``nursery`` until the block exits."""
    proxy = Proxy(target_port)
    scope = await nursery.start(proxy.serve)
    try:
        yield proxy
    finally:
        scope.cancel()
