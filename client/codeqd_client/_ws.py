"""A small WebSocket client (RFC 6455) over anyio streams, with ``wsproto`` doing the
framing: enough for the worker stream (text frames, pings, close codes), nothing more.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import anyio
from anyio.abc import ByteStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

_READ = 65536


class HandshakeRefused(Exception):
    """The server answered the upgrade with an HTTP status instead of 101."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"WebSocket upgrade refused with HTTP {status}")
        self.status = status
        self.body = body


class Closed(Exception):
    """The WebSocket is closed; ``code`` is the close code (1006: the connection died)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class WebSocket:
    def __init__(self, stream: ByteStream, conn: WSConnection) -> None:
        self._stream = stream
        self._conn = conn
        self._send_lock = anyio.Lock()
        self._text: list[str] = []
        self._pending: list[str] = []
        self.closed: Closed | None = None

    @classmethod
    async def connect(
        cls,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> WebSocket:
        """Open ``url`` (``http``/``ws`` or ``https``/``wss``); raises
        :class:`HandshakeRefused` for an HTTP answer and ``OSError`` when unreachable."""
        parts = urlsplit(url)
        secure = parts.scheme in ("https", "wss")
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if secure else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with anyio.fail_after(timeout):
            stream: ByteStream
            if secure:
                stream = await anyio.connect_tcp(
                    host, port, ssl_context=ssl_context or ssl.create_default_context()
                )
            else:
                stream = await anyio.connect_tcp(host, port)
            try:
                conn = WSConnection(ConnectionType.CLIENT)
                extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
                netloc = parts.netloc.rsplit("@", 1)[-1]
                await stream.send(
                    conn.send(Request(host=netloc, target=target, extra_headers=extra))
                )
                status, body = 0, b""
                while True:
                    data = await stream.receive(_READ)
                    conn.receive_data(data)
                    for event in conn.events():
                        if isinstance(event, AcceptConnection):
                            return cls(stream, conn)
                        if isinstance(event, RejectConnection):
                            status = event.status_code
                            if not event.has_body:
                                raise HandshakeRefused(status, body)
                        elif isinstance(event, RejectData):
                            body += event.data
                            if event.body_finished:
                                raise HandshakeRefused(status, body)
            except BaseException:
                await anyio.aclose_forcefully(stream)
                raise

    async def send(self, text: str) -> None:
        if self.closed is not None:
            raise self.closed
        await self._write(self._conn.send(TextMessage(data=text)))

    async def _send_event(self, event: Event) -> None:
        """Send a control frame unless the connection's state no longer allows it."""
        try:
            data = self._conn.send(event)
        except LocalProtocolError:
            return
        await self._write(data)

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self._stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
                # ``receive`` still reads what arrived (e.g. the close frame saying why).
                raise self.closed or Closed(1006, str(e) or "connection lost") from None

    async def receive(self) -> str:
        """The next text message; raises :class:`Closed` when the WebSocket closes."""
        while not self._text:
            if self.closed is not None:
                raise self.closed
            try:
                data = await self._stream.receive(_READ)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
            ) as e:
                self.closed = Closed(1006, str(e) or "connection lost")
                raise self.closed from None
            self._conn.receive_data(data)
            for event in self._conn.events():
                if isinstance(event, TextMessage):
                    self._pending.append(event.data)
                    if event.message_finished:
                        self._text.append("".join(self._pending))
                        self._pending.clear()
                elif isinstance(event, BytesMessage):
                    continue
                elif isinstance(event, Ping):
                    await self._send_event(event.response())
                elif isinstance(event, CloseConnection):
                    self.closed = Closed(event.code, event.reason or "")
                    with contextlib.suppress(Closed):
                        await self._send_event(event.response())
                    self.closed = Closed(event.code, event.reason or "")
                    await anyio.aclose_forcefully(self._stream)
        return self._text.pop(0)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (once) and drop the connection."""
        if self.closed is None:
            try:
                with anyio.move_on_after(2, shield=True):
                    await self._send_event(CloseConnection(code=code, reason=reason))
            except Closed:
                pass
            self.closed = Closed(code, reason)
        await anyio.aclose_forcefully(self._stream)
