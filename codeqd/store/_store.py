"""Store: typed wrappers around the Lua transitions (stub — being implemented)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from codeqd.config import Config


class Store:
    """One connection pool to the store; one method per transition."""

    def __init__(self, config: Config, url: str) -> None:
        self.config = config
        self.url = url

    async def ping(self) -> bool:
        """True when the store answers within the command timeout."""
        raise NotImplementedError

    async def promote_due(self, now_ms: int | None = None, limit: int = 500) -> int:
        """Move delayed tasks whose runAt has passed to ready, on every shard; returns count."""
        raise NotImplementedError

    async def reap_expired(self, now_ms: int | None = None, limit: int = 500) -> int:
        """Retry (with backoff) or dead-letter tasks whose lease expired; returns count."""
        raise NotImplementedError


@asynccontextmanager
async def connect(config: Config, url: str) -> AsyncIterator[Store]:
    """Open the pool to ``url``, load the scripts, check the shard count; close on exit."""
    yield Store(config, url)
