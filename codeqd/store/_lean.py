"""The hot path's store client: script calls (EVALSHA, and MULTI/EVALSHA/EXEC on
KVRocks), a task's reads and the background actors' polls, over plain trio streams,
replies parsed by hiredis, on one node (Redis or KVRocks; TCP or a unix socket).
coredis stays for everything else: clusters, TLS, loading scripts, other reads, pub/sub.

Why: coredis spends ~300 µs of client CPU per EVALSHA under trio (its command
wrappers, retry policy, telemetry checks, response callbacks), this ~40 µs
(docs/performance.md, "Where the time goes") — and a store call is on every create,
claim and result.

A connection is used by one call at a time and only ever holds that call's replies:
a call that fails or is cancelled part-way (its deadline, its client gone) closes its
connection instead of returning it, so no later call can read a reply owed to another.
An idle connection the store has closed (it restarted) is noticed before it is used
(it reads as readable) and replaced, so a store restart costs no failed call.
Connections speak RESP2 (no HELLO): a script's reply converts the same way on RESP2 and
RESP3 (tables to arrays, false to nil), and KVRocks before 2.12 answers HELLO 3 only when
configured to.
"""

from __future__ import annotations

import select
from collections.abc import Sequence
from typing import Any

import coredis
import coredis.exceptions as cx
import hiredis
import trio
from coredis.connection import TCPLocation, UnixDomainSocketLocation

_READ = 65536


def pack(*args: Any) -> bytes:
    """One command in RESP: an array of bulk strings (hiredis packs str, bytes, int and
    float in C, ~2.5x faster than the loop below, which takes anything else)."""
    try:
        return hiredis.pack_command(args)  # type: ignore[no-any-return]
    except TypeError:
        pass
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class NoScript(Exception):
    """The store does not have the script (NOSCRIPT): load it and call again."""


def _error(reply: hiredis.ReplyError) -> Exception:
    """An error reply as coredis would raise it (a "not now" such as ``LOADING`` or
    ``BUSY`` included: the store's ``_call`` makes those 503), or ``NoScript``."""
    text = str(reply)
    if text.startswith("NOSCRIPT"):
        return NoScript(text)
    return cx.ResponseError(text)


class _Connection:
    def __init__(self, stream: trio.abc.HalfCloseableStream | trio.SocketStream) -> None:
        self.stream = stream
        self.reader = hiredis.Reader(encoding="utf-8")

    async def roundtrip(self, request: bytes, replies: int) -> list[Any]:
        """Send ``request`` and read ``replies`` replies (error replies as values)."""
        try:
            await self.stream.send_all(request)
            out: list[Any] = []
            while len(out) < replies:
                reply = self.reader.gets()
                if reply is False:  # not a whole reply yet
                    data = await self.stream.receive_some(_READ)
                    if not data:
                        raise cx.ConnectionError("the store closed the connection")
                    self.reader.feed(bytes(data))
                    continue
                out.append(reply)
            return out
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            raise cx.ConnectionError(f"store connection lost ({e})") from None

    def idle_and_open(self) -> bool:
        """Whether an idle connection is still good: nothing to read on it. A readable
        idle connection was closed by the store (a restart) or holds what no call
        asked for: either way it is not used again. One ``select`` with no wait."""
        try:
            readable, _, _ = select.select([self.stream.socket.fileno()], [], [], 0)  # type: ignore[union-attr]
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        self.stream.socket.close()  # type: ignore[union-attr]


class LeanScripts:
    """A bounded pool of connections for script calls (see the module docstring)."""

    def __init__(
        self,
        location: TCPLocation | UnixDomainSocketLocation,
        *,
        username: str | None,
        password: str | None,
        db: int,
        size: int,
        connect_timeout: float,
    ) -> None:
        self.location = location
        self._hello: list[bytes] = []
        if password:
            self._hello.append(pack("AUTH", *((username,) if username else ()), password))
        if db:
            self._hello.append(pack("SELECT", db))
        self._connect_timeout = connect_timeout
        self._slots = trio.Semaphore(size)
        self._idle: list[_Connection] = []

    async def evalsha(self, sha: str, keys: list[str], args: list[Any], *, multi: bool) -> Any:
        """The script's reply; raises ``NoScript``, ``cx.ResponseError`` (an error the
        script raised) or ``cx.ConnectionError``. ``multi``: inside MULTI/EXEC, sent
        as one write (KVRocks: the script's writes become one write batch)."""
        call = pack("EVALSHA", sha, len(keys), *keys, *args)
        if not multi:
            (reply,) = await self._roundtrip(call, 1)
        else:
            ok, queued, done = await self._roundtrip(pack("MULTI") + call + pack("EXEC"), 3)
            for r in (ok, queued, done):
                if isinstance(r, hiredis.ReplyError):
                    raise _error(r)
            if not isinstance(done, list) or len(done) != 1:
                raise cx.ResponseError(f"unexpected EXEC reply {done!r}")
            reply = done[0]
        if isinstance(reply, hiredis.ReplyError):
            raise _error(reply)
        return reply

    async def command(self, *args: Any) -> Any:
        """One plain command's reply (the background actors' polls, run every fraction
        of a second whether or not there is work); raises as ``evalsha`` does."""
        (reply,) = await self.pipeline([args])
        return reply

    async def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The replies of plain ``commands`` sent as one write (a task's reads)."""
        replies = await self._roundtrip(b"".join(pack(*c) for c in commands), len(commands))
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise _error(reply)
        return replies

    async def _roundtrip(self, request: bytes, replies: int) -> list[Any]:
        async with self._slots:
            conn = self._take_idle() or await self._open()
            try:
                out = await conn.roundtrip(request, replies)
            except BaseException:
                conn.close()  # it may owe a reply: never reused
                raise
            self._idle.append(conn)
            return out

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.idle_and_open():
                return conn
            conn.close()
        return None

    async def _open(self) -> _Connection:
        with trio.fail_after(self._connect_timeout):
            if isinstance(self.location, UnixDomainSocketLocation):
                stream: Any = await trio.open_unix_socket(self.location.path)
            else:
                stream = await trio.open_tcp_stream(self.location.host, self.location.port)
            conn = _Connection(stream)
            try:
                for request in self._hello:
                    (reply,) = await conn.roundtrip(request, 1)
                    if isinstance(reply, hiredis.ReplyError):
                        raise cx.AuthenticationError(str(reply))
            except BaseException:
                conn.close()
                raise
        return conn

    def disconnect(self) -> None:
        """Close the idle connections (the next calls open fresh ones)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def lean_for(pool: Any, url: str, size: int, connect_timeout: float) -> LeanScripts | None:
    """The lean script client for a single node's coredis ``pool`` (None for a cluster
    or TLS: coredis serves those)."""
    if not isinstance(pool, coredis.ConnectionPool) or url.startswith("rediss://"):
        return None
    kw = pool.connection_kwargs
    if kw.get("ssl_context") is not None:
        return None
    location = getattr(pool, "location", None)
    if not isinstance(location, TCPLocation | UnixDomainSocketLocation):
        return None
    return LeanScripts(
        location,
        username=kw.get("username"),
        password=kw.get("password"),
        db=int(kw.get("db") or 0),
        size=size,
        connect_timeout=connect_timeout,
    )
