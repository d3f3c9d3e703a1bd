"""``Store``, the package's one face: the transitions of ``_store`` plus the store's
other parts, and ``connect`` to open it.

The parts are built here, over the transitions, so that none of their modules
imports this one: outbox (result callbacks), subscriptions, the process's wake-up
listener, the group-commit writer, batches and rate limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import coredis
from coredis.connection import UnixDomainSocketConnection

from codeqd.config import Config, RateBucket
from codeqd.domain.errors import CodeqError
from codeqd.domain.task import NewTask
from codeqd.store import _conn
from codeqd.store._batch import Created, Report, create_batch, report_batch
from codeqd.store._hints import Wakeups
from codeqd.store._outbox import Outbox
from codeqd.store._ratelimit import Decision, take
from codeqd.store._store import Meta, Transitions
from codeqd.store._streams import StreamRegistry
from codeqd.store._subscriptions import Subscriptions
from codeqd.store._writer import Writer


class Store(Transitions):
    """One connection pool to the store: every transition (``Transitions``), and
    ``outbox``, ``subscriptions``, ``streams`` (open worker streams, for the
    dashboard), ``wakeups`` (the process's listener: transitions
    post their hints to it too) and ``writer`` (group commit of creates, claims and results
    while it runs)."""

    def __init__(self, config: Config, client: Any, url: str) -> None:
        super().__init__(config, client, url)
        self.outbox = Outbox(self)
        self.subscriptions = Subscriptions(self)
        self.streams = StreamRegistry(self)
        self.wakeups = Wakeups(self)
        self.writer = Writer(self)

    async def create_batch(
        self, tenant: str, tasks: Sequence[NewTask], *, shard: int | None = None
    ) -> list[Created]:
        """Create ``tasks``; per task (meta, payload JSON, created), in order. Tasks
        without an idempotency key go to ``shard`` when given."""
        return await create_batch(self, tenant, tasks, shard)

    async def report_batch(
        self, tenant: str, worker_id: str, reports: Sequence[Report]
    ) -> list[tuple[Meta, dict[str, Any]] | CodeqError]:
        """The lease holder's results; per item (meta, Result) or its refusal, in order."""
        return await report_batch(self, tenant, worker_id, reports)

    async def take_rate(
        self, identity_hash: str, operation: str, bucket: RateBucket, now_ms: int, cost: int = 1
    ) -> Decision:
        """Take ``cost`` tokens from the caller's bucket (fails open)."""
        return await take(self, identity_hash, operation, bucket, now_ms, cost)


def _client_for(config: Config, url: str) -> Any:
    """A coredis client with our connections (``_conn``: Redis >= 6.2 or KVRocks, by what
    the server answers to ``HELLO 3``)."""
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "verify_version": False,
        "stream_timeout": float(config.store.command_timeout),
        "connect_timeout": float(config.store.connect_timeout),
        "max_connections": config.store.max_connections,
    }
    if url.startswith("redis+cluster://") or config.store.cluster:
        hosts, username, password = _conn.cluster_nodes(url)
        return coredis.RedisCluster(
            startup_nodes=[coredis.connection.TCPLocation(h, p) for h, p in hosts],
            username=username,
            password=password,
            connection_pool_cls=_conn.ClusterPool,
            **kwargs,
        )
    verify = kwargs.pop("verify_version")
    pool = coredis.ConnectionPool.from_url(url, **kwargs)
    pool.connection_class = (
        _conn.Unix if issubclass(pool.connection_class, UnixDomainSocketConnection) else _conn.TCP
    )
    return coredis.Redis(connection_pool=pool, decode_responses=True, verify_version=verify)


@asynccontextmanager
async def connect(config: Config, url: str) -> AsyncIterator[Store]:
    """Open the pool to ``url``; close it on exit. Does not wait for the store to answer."""
    client = _client_for(config, url)
    async with client:
        yield Store(config, client, url)
