"""A pub/sub subscriber connection of our own: trio sockets, the hiredis reply parser.

Why not coredis' ``PubSub``: coredis speaks RESP3 only and reads published messages
from RESP3 *push* frames (``>3``). KVRocks (2.10) confirms a SUBSCRIBE with a push
but sends every published message as an ordinary array (``*3 message ch data``,
``*4`` for patterns), which coredis never hands to the subscriber: wake-ups are
lost and long-polls fall back to their deadlines.

This connection never says ``HELLO 3``: it stays in RESP2, where Redis and KVRocks
alike send messages as ``*3`` arrays (and it would read ``>3`` pushes the same way:
hiredis returns both as lists). It authenticates with ``AUTH`` when the URL has
credentials, subscribes, then reads. Every ``ping_interval`` without traffic it
sends a ``PING``; a connection silent for three intervals is taken for dead (a
black-holed path delivers no reset) and the caller reconnects.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import hiredis
import trio


class SubscriberError(ConnectionError):
    """The subscription cannot continue (refused, closed, silent): reconnect."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to subscribe: ``host``/``port``, or ``path`` of a unix socket."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    username: str | None = None
    password: str | None = None
    #: ``rediss://``: TLS, verified against the system's CAs.
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        user = unquote(parts.username) if parts.username else None
        pw = unquote(parts.password) if parts.password is not None else None
        if parts.scheme == "unix":
            return cls(path=parts.path, username=user, password=pw)
        host = parts.hostname or "127.0.0.1"
        return cls(host, parts.port or 6379, None, user, pw, parts.scheme == "rediss")


def _pack(*args: str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Subscriber:
    """One subscribed connection; ``messages`` yields ``(channel, data)``."""

    def __init__(self, stream: trio.abc.Stream, ping_interval: float) -> None:
        self._stream = stream
        self._reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self._ping_interval = ping_interval

    async def _next_reply(self) -> object:
        silent = 0
        while True:
            reply = self._reader.gets()
            if reply is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise SubscriberError(f"the store refused: {reply}")
                return reply
            with trio.move_on_after(self._ping_interval):
                data = await self._stream.receive_some(65536)
                if not data:
                    raise SubscriberError("the store closed the subscription")
                self._reader.feed(bytes(data))
                silent = 0
                continue
            silent += 1
            if silent >= 3:
                raise SubscriberError(f"no answer for {3 * self._ping_interval:g}s")
            await self._stream.send_all(_pack("PING"))

    async def subscribe(self, endpoint: Endpoint, channels: Sequence[str]) -> None:
        if endpoint.password is not None:
            auth = (
                [endpoint.username, endpoint.password] if endpoint.username else [endpoint.password]
            )
            await self._stream.send_all(_pack("AUTH", *auth))
            await self._next_reply()
        await self._stream.send_all(_pack("SUBSCRIBE", *channels))
        confirmed = 0
        while confirmed < len(channels):
            reply = await self._next_reply()
            if isinstance(reply, list) and reply and reply[0] == "subscribe":
                confirmed += 1

    async def messages(self) -> AsyncIterator[tuple[str, str]]:
        """Every message, in order; raises ``SubscriberError`` when the connection ends or
        stays silent. Cancellation: nothing is lost that was not yet yielded (bytes read
        stay in the parser), but the caller then closes the connection anyway."""
        while True:
            reply = await self._next_reply()
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == "message":
                yield str(reply[1]), str(reply[2])
            # else: a PING's answer, a late confirmation: traffic, nothing to hand on


@asynccontextmanager
async def subscribe(
    endpoint: Endpoint,
    channels: Sequence[str],
    *,
    connect_timeout: float = 5.0,
    ping_interval: float = 5.0,
) -> AsyncIterator[Subscriber]:
    """Connect, authenticate and subscribe (within ``connect_timeout``: ``TooSlowError``
    after it); close on exit. Cancellation while connecting: nothing is left open."""
    with trio.fail_after(connect_timeout):
        if endpoint.path is not None:
            stream: trio.abc.Stream = await trio.open_unix_socket(endpoint.path)
        elif endpoint.tls:
            stream = await trio.open_ssl_over_tcp_stream(
                endpoint.host, endpoint.port, ssl_context=ssl.create_default_context()
            )
        else:
            stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
    async with stream:
        sub = Subscriber(stream, ping_interval)
        with trio.fail_after(connect_timeout):
            await sub.subscribe(endpoint, channels)
        yield sub
