"""coredis connections that work on Redis >= 6.2 and on KVRocks, by what the server answers.

coredis 6 speaks RESP3 only: every connection starts with ``HELLO 3`` and reads
``int(reply["id"])``. Redis answers a map with the client ``id``; KVRocks 2.10
answers a map of six fields without one (``server redis``, ``version 4.0.0``,
``proto 3``, ``mode``, ``role``, ``modules``), and with ``resp3-enabled no`` (its
default before 2.12) a RESP2 array with ``proto 2``.

``_Hello`` wraps the reply of that one command: a map without ``id`` gets
``id 0`` (codeqd never uses the client id: no client-side caching, no
``CLIENT TRACKING``), and a RESP2 reply fails the handshake with
``UnsupportedServer`` naming the setting to change, instead of coredis' generic
"Connection attempt failed unexpectedly!". Every other command goes through
untouched: the cost is one comparison per command (measured in docs/reliability.md).

``check_server`` is the start-up check: it names a server that cannot work
(Redis older than 6.2, KVRocks older than 2.8 or without RESP3) in one message.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any
from urllib.parse import unquote

from coredis.cluster._node import ClusterNodeLocation
from coredis.connection import (
    ClusterConnection,
    TCPConnection,
    TCPLocation,
    UnixDomainSocketConnection,
)
from coredis.exceptions import RedisError
from coredis.pool import ClusterConnectionPool

#: The KVRocks release this was verified on; older releases from 2.8 on start with a
#: warning, older than 2.8 (no RESP3 at all) are refused.
KVROCKS_VERIFIED = (2, 10, 1)
KVROCKS_MINIMUM = (2, 8, 0)
REDIS_MINIMUM = (6, 2, 0)

RESP3_OFF = (
    "the store answered HELLO 3 in RESP2: this is KVRocks with resp3-enabled no "
    "(its default before 2.12); set `resp3-enabled yes` in kvrocks.conf "
    "(or CONFIG SET resp3-enabled yes) and restart codeqd"
)


class UnsupportedServer(RedisError):
    """The store answered, but is a server codeqd cannot work with (the message says why)."""


def _as_map(reply: Any) -> dict[Any, Any]:
    if isinstance(reply, dict):
        return reply
    if isinstance(reply, list):  # RESP2: a flat array of name, value pairs
        return dict(zip(reply[::2], reply[1::2], strict=False))
    raise UnsupportedServer(f"unexpected HELLO reply {reply!r}")


class _Hello:
    """The awaitable reply of ``HELLO 3``, made acceptable to coredis' handshake."""

    __slots__ = ("_request",)

    def __init__(self, request: Any) -> None:
        self._request = request

    def __await__(self) -> Generator[Any, None, Any]:
        reply = _as_map((yield from self._request.__await__()))
        proto = reply.get(b"proto", reply.get("proto"))
        if proto != 3:
            raise UnsupportedServer(RESP3_OFF)
        if b"id" not in reply and "id" not in reply:
            reply[b"id"] = 0  # KVRocks: no client id (codeqd never reads it)
        return reply


class _HelloTolerant:
    """Mixin for coredis connections: see the module."""

    def create_request(self, command: bytes, *args: Any, **kwargs: Any) -> Any:
        request = super().create_request(command, *args, **kwargs)  # type: ignore[misc]
        if command == b"HELLO":
            return _Hello(request)
        return request


class TCP(_HelloTolerant, TCPConnection):
    pass


class Unix(_HelloTolerant, UnixDomainSocketConnection):
    pass


class Cluster(_HelloTolerant, ClusterConnection):
    pass


class _StartupNode(ClusterNodeLocation):
    """A startup node whose discovery client (``CLUSTER SLOTS``) uses our connection."""

    def as_client(self, **client_args: Any) -> Any:
        from coredis import Redis
        from coredis.pool import ConnectionPool

        pool = ConnectionPool(
            connection_class=Cluster,
            location=TCPLocation(self.host, self.port),
            username=client_args.get("username"),
            password=client_args.get("password"),
            stream_timeout=client_args.get("stream_timeout"),
            connect_timeout=client_args.get("connect_timeout"),
            decode_responses=client_args.get("decode_responses", False),
            encoding=client_args.get("encoding", "utf-8"),
            ssl_context=client_args.get("ssl_context"),
        )
        return Redis(connection_pool=pool, verify_version=False)


class ClusterPool(ClusterConnectionPool):
    """coredis' cluster pool with our connection class, for the pool's connections and
    for the discovery of the layout: coredis discovers through clients made by each
    node's ``as_client``, with its own connection class. Discovery therefore always
    asks the startup nodes (``nodemanager_follow_cluster`` off), which are ours, and
    skips the full-coverage check (it asks discovered nodes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["connection_class"] = Cluster
        kwargs["nodemanager_follow_cluster"] = False
        kwargs["skip_full_coverage_check"] = True
        super().__init__(*args, **kwargs)
        discovery = self.cluster_layout._discovery_service
        discovery._initial_startup_nodes = [
            _StartupNode(n.host, n.port) for n in discovery._initial_startup_nodes
        ]


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """``redis+cluster://[user:pass@]host:port[,host:port...]`` → nodes, username, password
    (percent-decoded; each may be None)."""
    rest = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    userinfo, at, hosts = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    nodes = []
    for hp in hosts.split(","):
        host, _, port = hp.rpartition(":")
        nodes.append((host.strip("[]"), int(port)))
    return nodes, username, password


def _version(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def server_problem(info: str) -> tuple[str, str | None]:
    """From ``INFO server``: (a description of the server, why it cannot work or None)."""
    fields = dict(
        line.split(":", 1) for line in info.splitlines() if ":" in line and not line.startswith("#")
    )
    if "kvrocks_version" in fields:
        v = fields["kvrocks_version"].strip()
        if v and _version(v) < KVROCKS_MINIMUM:
            return f"KVRocks {v}", (
                f"KVRocks {v} has no RESP3 (HELLO 3); codeqd needs KVRocks >= 2.8 "
                "(verified on 2.10.1) with resp3-enabled yes"
            )
        return f"KVRocks {v}", None
    v = fields.get("redis_version", "").strip()
    if v and _version(v) < REDIS_MINIMUM:
        return f"Redis {v}", f"Redis {v} is too old: codeqd needs Redis >= 6.2"
    return f"Redis {v}", None
