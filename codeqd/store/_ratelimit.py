"""Token buckets in the store, one per (bearer token, operation): ``lua/rate_limit.lua``.

Keys hold the sha256 of the token, never the token, under a hash tag of their
own (one key per script call, so it runs on a cluster as on a single node).
The limiter fails open: if the store cannot answer, the request goes through
and ``ratelimit.store_error`` is logged and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import coredis.exceptions as cx
import structlog

from codeqd.config import RateBucket
from codeqd.domain.errors import CodeqError
from codeqd.metrics import RATELIMIT_STORE_ERRORS
from codeqd.store._store import Store

log = structlog.get_logger("codeqd.ratelimit")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until a token is available; 0 when allowed
    remaining: float


def bucket_key(store: Store, token_hash: str, operation: str) -> str:
    prefix = store.keys.prefix
    return f"{prefix}:{{{prefix}:rl:{token_hash[:32]}}}:{operation}"


async def take(
    store: Store, token_hash: str, operation: str, bucket: RateBucket, now_ms: int
) -> Decision:
    """Take one token; fails open (allowed) when the store errors.

    Cancellation: one store round trip; a cancelled call may or may not have taken
    the token.
    """
    try:
        allowed, retry_ms, remaining = await store.run_script(
            "rate_limit",
            [bucket_key(store, token_hash, operation)],
            [now_ms, repr(float(bucket.rate)), bucket.burst],
        )
    except (CodeqError, cx.RedisError, OSError) as e:
        log.warning("ratelimit.store_error", operation=operation, error=type(e).__name__)
        RATELIMIT_STORE_ERRORS.labels(operation).inc()
        return Decision(True, 0.0, 0.0)
    return Decision(bool(int(allowed)), int(retry_ms) / 1000, float(remaining))
