"""Verified tokens, remembered briefly: clients reuse one bearer token for many requests,
and re-checking an RS256 signature costs more than the rest of a create request's auth.

An entry is keyed by the token's sha256 (the same string carries the same signature),
lives at most ``ttl`` seconds and never past the token's ``exp`` (plus leeway), and is
dropped when the provider's key set changes (``generation``), so a key removed from the
JWKS stops verifying at the next refresh as before. Failures are never cached.
"""

from __future__ import annotations

import hashlib
from typing import Any

from codeqd.auth._jwt import ClaimRules

MAX_ENTRIES = 10_000
TTL = 60.0


class CachingVerifier:
    def __init__(
        self, inner: Any, rules: ClaimRules, *, ttl: float = TTL, max_entries: int = MAX_ENTRIES
    ) -> None:
        self.inner = inner
        self._leeway = rules.leeway
        self._ttl = ttl
        self._max = max_entries
        # digest -> (claims, valid until (wall seconds), key-set generation)
        self._entries: dict[bytes, tuple[dict[str, Any], float, int]] = {}

    def _generation(self) -> int:
        return int(getattr(self.inner, "generation", 0))

    async def verify(self, token: str, now: float) -> dict[str, Any]:
        digest = hashlib.sha256(token.encode()).digest()
        hit = self._entries.get(digest)
        if hit is not None:
            cached, until, generation = hit
            if now < until and generation == self._generation():
                return cached
            del self._entries[digest]
        claims: dict[str, Any] = await self.inner.verify(token, now)
        until = now + self._ttl
        exp = claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            until = min(until, float(exp) + self._leeway)
        if len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]  # the oldest insertion
        self._entries[digest] = (claims, until, self._generation())
        return claims
