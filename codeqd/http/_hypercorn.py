"""What codeqd changes in hypercorn's trio worker (0.18): the h2c switch, one write per
response and a keep-alive timer that costs no task per request. Importing installs them.

Each replaces one private method of hypercorn's, so hypercorn is pinned to 0.18.x
(pyproject.toml) and the import fails loudly if a patched name has gone.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import hypercorn.trio.run
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.events import RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.trio.tcp_server import TCPServer


class Config(HyperConfig):
    #: ``actors.ingress.h2c``: hypercorn has no setting for it (0.18), see below.
    codeqd_h2c = True


_hypercorn_check_protocol = H11Protocol._check_protocol


async def _check_protocol(self: H11Protocol, event: h11.Request) -> None:
    """hypercorn switches a connection to HTTP/2 on ``Upgrade: h2c`` or on the
    prior-knowledge preface, with no setting to turn that off. With
    ``actors.ingress.h2c = false`` neither switch happens: the request goes on as
    HTTP/1.1 (an Upgrade header is only a proposal, RFC 9110 §7.8), and a preface's
    ``PRI *`` meets the 404 of an unknown route, then its binary frames h11's 400."""
    if getattr(self.config, "codeqd_h2c", True):
        await _hypercorn_check_protocol(self, event)


async def _send_h11_event(self: H11Protocol, event: Any) -> None:
    """hypercorn writes a response's head, its body and its end as three socket writes
    (the end is empty unless chunked), each a trip round the event loop and, with
    TCP_NODELAY, a packet of its own for the client to read. Here the head of an HTTP
    response waits for what follows it (the app's first body message, or the end) and
    goes out in the same write, and an empty write is skipped. A 100 Continue and a
    WebSocket handshake are written at once: something must answer them first.

    Cancellation: as hypercorn's, the write happens under hypercorn's shielded send."""
    try:
        data = self.connection.send(event)
    except h11.LocalProtocolError:
        if self.connection.their_state != h11.ERROR:
            raise
        return
    if type(event) is h11.Response and type(self.stream) is HTTPStream:
        self.__dict__["codeqd_head"] = data
        return
    head = self.__dict__.pop("codeqd_head", b"")
    if head:
        data = head + data
    if data:
        await self.send(RawData(data=data))


class _KeepAlive:
    """A connection's keep-alive timer. hypercorn's (``TrioSingleTask``) starts a task
    with ``Nursery.start`` each time the connection goes idle and cancels it when the
    next request arrives: two lock round trips and a task per request. Here one task
    waits for the daemon's shutdown under a cancel scope whose deadline is moved: now
    plus ``keep_alive_timeout`` while idle, never while a request is being served.

    As hypercorn's, it closes the connection when the deadline passes or shutdown
    begins while the connection is idle; it also ends as soon as the connection does
    (hypercorn's idle task outlived a closed connection until its timeout)."""

    def __init__(self, server: TCPServer) -> None:
        self._server = server
        self._scope: trio.CancelScope | None = None
        self._idle = False
        self._closed = False

    async def restart(self, task_group: Any, action: Callable[[], Awaitable[None]]) -> None:
        """The connection went idle (``action`` is hypercorn's idle timeout; the timer
        runs its own equivalent)."""
        if self._closed:  # a response finished after the connection ended: nothing to time
            return
        self._idle = True
        deadline = trio.current_time() + self._server.config.keep_alive_timeout
        if self._scope is None:
            self._scope = trio.CancelScope(deadline=deadline)
            task_group.spawn(self._watch, self._scope)
        else:
            self._scope.deadline = deadline

    async def stop(self) -> None:
        """A request began: no keep-alive deadline while it is served."""
        self._idle = False
        if self._scope is not None:
            self._scope.deadline = math.inf

    def close(self) -> None:
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()

    async def _watch(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._server.context.terminated.wait()
        if self._scope is scope:
            self._scope = None
        if self._idle and not self._closed:
            with trio.CancelScope(shield=True):
                await self._server._initiate_server_close()


class _TCPServer(TCPServer):
    """hypercorn's connection handler with the keep-alive timer above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_task: Any = _KeepAlive(self)

    async def _read_data(self) -> None:
        try:
            await super()._read_data()
        finally:
            self.idle_task.close()


def _install() -> None:
    for owner, name in (
        (H11Protocol, "_check_protocol"),
        (H11Protocol, "_send_h11_event"),
        (TCPServer, "_read_data"),
        (TCPServer, "_initiate_server_close"),
        (hypercorn.trio.run, "TCPServer"),
    ):
        if not hasattr(owner, name):
            raise ImportError(f"hypercorn has no {owner.__name__}.{name}: codeqd needs 0.18.x")
    H11Protocol._check_protocol = _check_protocol  # type: ignore[method-assign]
    H11Protocol._send_h11_event = _send_h11_event  # type: ignore[method-assign]
    setattr(hypercorn.trio.run, "TCPServer", _TCPServer)  # noqa: B010 (not exported)


_install()
