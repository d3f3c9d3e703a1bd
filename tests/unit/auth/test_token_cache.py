"""The verified-token cache: hits skip the provider, but never outlive exp, the TTL or a
key-set change, and failures are never remembered."""

from __future__ import annotations

from typing import Any

import pytest

from codeqd.auth import ClaimRules
from codeqd.auth._token_cache import CachingVerifier
from codeqd.domain.errors import Unauthorized


class CountingProvider:
    """A provider whose answers the test scripts (not a stand-in for a store or HTTP peer)."""

    def __init__(self) -> None:
        self.calls = 0
        self.generation = 0
        self.claims: dict[str, Any] = {"sub": "a", "exp": 1000}
        self.fail = False

    async def verify(self, token: str, now: float) -> dict[str, Any]:
        self.calls += 1
        if self.fail or now > self.claims["exp"] + 60:
            raise Unauthorized("token expired", code="token_expired")
        return self.claims


async def test_hits_expiry_generation_and_failures() -> None:
    inner = CountingProvider()
    cache = CachingVerifier(inner, ClaimRules(leeway=60), ttl=30, max_entries=2)
    assert (await cache.verify("t1", 900))["sub"] == "a"
    await cache.verify("t1", 910)
    assert inner.calls == 1
    await cache.verify("t1", 931)  # past the TTL: verified again
    assert inner.calls == 2
    with pytest.raises(Unauthorized, match="expired"):
        await cache.verify("t1", 1061)  # past exp + leeway: never served from the cache
    inner.generation += 1  # the key set changed
    await cache.verify("t1", 940)
    assert inner.calls == 4
    inner.fail = True
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await cache.verify("bad", 940)
    assert inner.calls == 6
    inner.fail = False
    await cache.verify("t2", 940)
    await cache.verify("t3", 940)  # evicts t1, the oldest
    calls = inner.calls
    await cache.verify("t1", 941)
    assert inner.calls == calls + 1
