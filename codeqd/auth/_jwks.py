"""The ``jwks`` provider: public keys fetched from a JWKS URL, cached, refreshed with care.

Keys are trusted for ``jwks_cache_ttl``; a token naming an unknown ``kid``
triggers at most one fetch per ``jwks_refresh_cooldown`` (shared by all
requests of the process), so a flood of made-up key ids cannot hammer the
JWKS server. When a fetch fails, cached keys keep working; only requests that
need a key the cache lacks get 503.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import httpx
import jwt
import orjson
import structlog
import trio

from codeqd.auth._jwt import (
    ClaimRules,
    check_algorithm,
    check_times,
    decode,
    token_header,
    unauthorized,
)
from codeqd.domain.errors import ServiceUnavailable

log = structlog.get_logger("codeqd.auth")

MAX_JWKS_BYTES = 1024 * 1024


class JwksFetchError(Exception):
    """The JWKS URL did not answer with a usable key set."""


class JwksKeys:
    """The key set of one JWKS URL. ``clock`` is trio's (monotonic, mockable in tests)."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float,
        cooldown: float,
        timeout: float,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.url = url
        self._ttl = ttl
        self._cooldown = cooldown
        self._timeout = timeout
        self._clock = clock
        self._jwks: dict[str, dict[str, Any]] = {}
        self._keys: dict[tuple[str, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_ok = False
        self._lock = trio.Lock()
        #: Fetches attempted so far (for tests and metrics).
        self.fetches = 0
        #: Bumped whenever a fetch changes the key set (verified-token caches drop entries).
        self.generation = 0

    async def _fetch(self) -> dict[str, dict[str, Any]]:
        # Cancellation: the fetch is abandoned with the request that started it;
        # the next request needing a refresh retries (subject to the cooldown).
        try:
            async with (
                httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client,
                client.stream("GET", self.url, headers={"Accept": "application/json"}) as r,
            ):
                if r.status_code != 200:
                    raise JwksFetchError(f"HTTP {r.status_code}")
                body = bytearray()
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksFetchError("key set larger than 1 MiB")
        except httpx.HTTPError as e:
            raise JwksFetchError(type(e).__name__) from e
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise JwksFetchError("not JSON") from None
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, list):
            raise JwksFetchError("no 'keys' list")
        out: dict[str, dict[str, Any]] = {}
        for k in keys:
            if isinstance(k, dict) and k.get("use", "sig") == "sig":
                kid = k.get("kid", "")
                out[kid if isinstance(kid, str) else ""] = k
        return out

    async def _refresh(self, reason: str) -> bool:
        """Fetch unless one was attempted within the cooldown; True when the key set
        is fresh from a successful fetch (this one or a concurrent one)."""
        async with self._lock:
            now = self._clock()
            if self._attempted_at is not None and now - self._attempted_at < self._cooldown:
                return self._last_ok
            self._attempted_at = now
            self.fetches += 1
            try:
                jwks = await self._fetch()
            except JwksFetchError as e:
                self._last_ok = False
                log.warning(
                    "auth.jwks_fetch_failed",
                    url=self.url,
                    reason=reason,
                    error=str(e),
                    cached_keys=len(self._jwks),
                )
                return False
            if jwks != self._jwks:
                self.generation += 1
            self._jwks = jwks
            self._keys = {}
            self._fetched_at = self._clock()
            self._last_ok = True
            log.info("auth.jwks_refreshed", url=self.url, reason=reason, keys=len(jwks))
            return True

    def _lookup(self, kid: str | None) -> dict[str, Any] | None:
        if kid is not None:
            return self._jwks.get(kid)
        return next(iter(self._jwks.values())) if len(self._jwks) == 1 else None

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The verification key for ``kid``; fetches the set on first use, after the TTL,
        and (once per cooldown) when ``kid`` is unknown."""
        jwk = self._lookup(kid)
        stale = self._fetched_at is None or self._clock() - self._fetched_at >= self._ttl
        if jwk is not None and stale and not self._lock.locked():
            # Only the first request past the TTL waits for the refresh; a failed one
            # keeps the cached keys.
            await self._refresh("ttl")
            jwk = self._lookup(kid)
        elif jwk is None:
            ok = await self._refresh("unknown_kid" if self._fetched_at is not None else "first_use")
            jwk = self._lookup(kid)
            if jwk is None and not ok:
                raise ServiceUnavailable(
                    "cannot verify the token: the JWKS key set is unavailable; retry later",
                    code="jwks_unavailable",
                )
        if jwk is None:
            if kid is None:
                raise unauthorized(
                    "token header has no 'kid' and the key set has several keys", "unknown_key"
                )
            raise unauthorized(
                f"token signed with an unknown key (kid {kid[:64]!r})", "unknown_key"
            )
        key = self._keys.get((kid or "", alg))
        if key is None:
            if jwk.get("alg", alg) != alg:
                raise unauthorized(
                    f"token algorithm {alg!r} does not match its key's "
                    f"{str(jwk.get('alg'))[:16]!r}",
                    "alg_not_allowed",
                )
            try:
                key = jwt.PyJWK(jwk, algorithm=alg)
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                raise unauthorized(
                    f"token algorithm {alg!r} does not fit its key (kid {(kid or '')[:64]!r})",
                    "alg_not_allowed",
                ) from None
            self._keys[(kid or "", alg)] = key
        return key


class JwksVerifier:
    def __init__(self, keys: JwksKeys, algorithms: Collection[str], rules: ClaimRules) -> None:
        self.keys = keys
        self._algorithms = frozenset(algorithms)
        self._rules = rules

    @property
    def generation(self) -> int:
        return self.keys.generation

    async def verify(self, token: str, now: float) -> dict[str, Any]:
        header = token_header(token)
        alg = header["alg"]
        check_algorithm(alg, self._algorithms)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise unauthorized("invalid token: 'kid' must be a string", "malformed_token")
        key = await self.keys.key(kid, alg)
        claims = decode(token, key, alg, self._rules)
        check_times(claims, now, self._rules)
        return claims
