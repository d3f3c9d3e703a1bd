"""Token buckets in the store, one per (verified caller, operation): ``lua/rate_limit.lua``.

A caller is its tenant, sub and role; keys hold a sha256 of them (hex, so no
claim text can open or close the hash tag), under a hash tag of their own (one
key per script call, so it runs on a cluster as on a single node). A request
costs as many tokens as it carries items (see the script for costs above burst).
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
from codeqd.store._store import Transitions

log = structlog.get_logger("codeqd.ratelimit")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until a token is available; 0 when allowed
    remaining: float


def bucket_key(store: Transitions, identity_hash: str, operation: str) -> str:
    prefix = store.keys.prefix
    return f"{prefix}:{{{prefix}:rl:{identity_hash[:32]}}}:{operation}"


async def take(
    store: Transitions,
    identity_hash: str,
    operation: str,
    bucket: RateBucket,
    now_ms: int,
    cost: int = 1,
) -> Decision:
    """Take ``cost`` tokens; fails open (allowed) when the store errors.

    Cancellation: one store round trip; a cancelled call may or may not have taken
    the token.
    """
    try:
        allowed, retry_ms, remaining = await store.run_script(
            "rate_limit",
            [bucket_key(store, identity_hash, operation)],
            [now_ms, repr(float(bucket.rate)), bucket.burst, max(1, cost)],
        )
    except (CodeqError, cx.RedisError, OSError) as e:
        log.warning("ratelimit.store_error", operation=operation, error=type(e).__name__)
        RATELIMIT_STORE_ERRORS.labels(operation).inc()
        return Decision(True, 0.0, 0.0)
    return Decision(bool(int(allowed)), int(retry_ms) / 1000, float(remaining))
