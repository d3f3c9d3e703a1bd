"""Verify bearer tokens for a role with that role's provider, and build the Principal.

``auth.mode = "dev"``: both roles verify HS256 with the dev secret (tokens from
``codeqd token``). ``auth.mode = "jwt"``: ``[auth.producer]`` and
``[auth.worker]`` each pick ``jwks``, ``hs256``, ``static`` or ``dev``.
A token is a worker token when its ``aud`` includes the worker audience
(``auth.worker.audience``, default ``codeq-worker``); admin tokens are producer
tokens with ``role: ADMIN`` (or ``roles`` containing it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import jwt

from codeqd.auth._dev import load_or_create_dev_secret
from codeqd.auth._hs256 import HS256Verifier
from codeqd.auth._jwks import JwksKeys, JwksVerifier
from codeqd.auth._jwt import ClaimRules, Clock
from codeqd.auth._principal import ALL_TENANTS, ALL_WORKER_SCOPES, Principal, tenant_from_claims
from codeqd.auth._static import StaticVerifier
from codeqd.auth._token_cache import CachingVerifier
from codeqd.config import Config, ProviderConfig
from codeqd.domain.errors import Forbidden, Unauthorized

WORKER_AUDIENCE = "codeq-worker"
MAX_TOKEN_BYTES = 8192


class Verifier(Protocol):
    async def verify(self, token: str, now: float) -> dict[str, Any]:
        """The token's claims, or ``Unauthorized`` naming why not (``ServiceUnavailable``
        when the keys needed cannot be fetched)."""
        ...


def _bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized(
            "missing bearer token: send 'Authorization: Bearer <token>'", code="missing_token"
        )
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "malformed Authorization header: expected 'Bearer <token>'", code="malformed_token"
        )
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthorized(
            f"invalid token: longer than {MAX_TOKEN_BYTES} characters", code="malformed_token"
        )
    return token


def _is_admin(claims: Mapping[str, Any]) -> bool:
    roles = claims.get("roles")
    return claims.get("role") == "ADMIN" or (isinstance(roles, list) and "ADMIN" in roles)


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


def _verifier(
    config: Config, provider: ProviderConfig, role: str, key_sets: dict[str, JwksKeys]
) -> Verifier:
    skew = float(config.auth.clock_skew)
    return CachingVerifier(_provider(config, provider, role, key_sets), ClaimRules(leeway=skew))


def _provider(
    config: Config, provider: ProviderConfig, role: str, key_sets: dict[str, JwksKeys]
) -> Verifier:
    skew = float(config.auth.clock_skew)
    if config.auth.mode == "dev" or provider.provider == "dev":
        return HS256Verifier(load_or_create_dev_secret(config), ClaimRules(leeway=skew))
    rules = ClaimRules(issuer=provider.issuer, audience=provider.audience, leeway=skew)
    if provider.provider == "hs256":
        return HS256Verifier(provider.secret, rules)
    if provider.provider == "static":
        return StaticVerifier(provider.tokens, role, rules)
    # Both roles often trust the same identity provider: one cache (and one fetch) per URL.
    keys = key_sets.get(provider.jwks_url)
    if keys is None:
        keys = key_sets[provider.jwks_url] = JwksKeys(
            provider.jwks_url,
            ttl=float(provider.jwks_cache_ttl),
            cooldown=float(provider.jwks_refresh_cooldown),
            timeout=float(provider.jwks_timeout),
        )
    return JwksVerifier(keys, provider.algorithms, rules)


def _same_provider(a: ProviderConfig, b: ProviderConfig) -> bool:
    return (a.provider, a.jwks_url, a.secret, a.tokens, a.issuer, a.audience) == (
        b.provider,
        b.jwks_url,
        b.secret,
        b.tokens,
        b.issuer,
        b.audience,
    )


class Authenticator:
    """One per process. ``clock`` (wall time, seconds) is used for ``exp``/``nbf``/``iat``
    and for rate-limit buckets; tests may replace it."""

    def __init__(self, config: Config, *, clock: Clock = time.time) -> None:
        self._config = config
        self.clock = clock
        auth = config.auth
        key_sets: dict[str, JwksKeys] = {}
        self.producer_verifier: Verifier = _verifier(config, auth.producer, "producer", key_sets)
        dev = auth.mode == "dev"
        self.worker_verifier: Verifier = (
            self.producer_verifier
            if dev or _same_provider(auth.producer, auth.worker)
            else _verifier(config, auth.worker, "worker", key_sets)
        )
        self._worker_audience = (auth.worker.audience if not dev else "") or WORKER_AUDIENCE

    def _is_worker_token(self, claims: Mapping[str, Any]) -> bool:
        return self._worker_audience in _audiences(claims)

    def _principal(
        self, claims: Mapping[str, Any], role: Literal["producer", "worker"]
    ) -> Principal:
        tenant = tenant_from_claims(claims)
        is_admin = role == "producer" and _is_admin(claims)
        if is_admin and claims.get("tenant") == ALL_TENANTS:
            tenant = ALL_TENANTS
        if not tenant:
            raise Unauthorized("token has neither a tenant claim nor a 'sub'", code="missing_claim")
        if tenant == ALL_TENANTS and not is_admin:
            raise Forbidden("tenant '*' is reserved for admin tokens (role ADMIN)")
        if role == "producer":
            return Principal(
                sub=str(claims["sub"]),
                tenant=tenant,
                role="producer",
                is_admin=is_admin,
                claims=claims,
            )
        events = claims.get("eventTypes")
        scope = claims.get("scope")
        group = claims.get("workerGroup")
        return Principal(
            sub=str(claims["sub"]),
            tenant=tenant,
            role="worker",
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            event_types=tuple(e for e in events if isinstance(e, str))
            if isinstance(events, list)
            else (),
            worker_group=group if isinstance(group, str) else None,
            claims=claims,
        )

    async def _verify_either(self, token: str, now: float) -> tuple[dict[str, Any], bool]:
        """For routes open to both roles: the provider the token's (unverified) ``aud``
        points at first, the other one if that refuses it. Returns (claims, via_worker)."""
        try:
            peek = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            peek = {}
        order = [(self.producer_verifier, False), (self.worker_verifier, True)]
        if self._is_worker_token(peek):
            order.reverse()
        if order[0][0] is order[1][0]:
            order.pop()
        first: Unauthorized | None = None
        for verifier, via_worker in order:
            try:
                return await verifier.verify(token, now), via_worker
            except Unauthorized as e:
                first = first or e
        assert first is not None
        raise first

    async def _verify_as(
        self, token: str, now: float, primary: Verifier, other: Verifier
    ) -> tuple[dict[str, Any], bool]:
        """Verify with the route's provider; when it refuses, a token the other role's
        provider accepts is a valid token of the wrong kind (403, not 401).
        Returns (claims, verified by ``primary``)."""
        try:
            return await primary.verify(token, now), True
        except Unauthorized as e:
            if other is primary:
                raise
            try:
                return await other.verify(token, now), False
            except Unauthorized:
                raise e from None

    async def authenticate(
        self, header: str | None, role: Literal["producer", "worker", "any"]
    ) -> Principal:
        """Verify the header's token for ``role``; ``any`` accepts either kind.

        Raises ``Unauthorized`` (401) for a missing or invalid token, ``Forbidden``
        (403) for a valid token of the wrong kind, ``ServiceUnavailable`` (503) when a
        JWKS key the token needs cannot be fetched. Awaits only a JWKS fetch, which a
        cancellation abandons.
        """
        token = _bearer(header)
        now = self.clock()
        if role == "any":
            claims, via_worker = await self._verify_either(token, now)
            is_worker = via_worker or self._is_worker_token(claims)
            return self._principal(claims, "worker" if is_worker else "producer")
        if role == "producer":
            claims, own = await self._verify_as(
                token, now, self.producer_verifier, self.worker_verifier
            )
            if not own or self._is_worker_token(claims):
                raise Forbidden("a producer token is required; this is a worker token")
            return self._principal(claims, "producer")
        claims, own = await self._verify_as(
            token, now, self.worker_verifier, self.producer_verifier
        )
        if own and self._is_worker_token(claims):
            return self._principal(claims, "worker")
        if not self._config.auth.allow_producer_as_worker:
            raise Forbidden(f"a worker token is required (audience {self._worker_audience!r})")
        p = self._principal(claims, "producer")
        return Principal(
            sub=p.sub,
            tenant=p.tenant,
            role="worker",
            scopes=ALL_WORKER_SCOPES,
            event_types=("*",),
            claims=claims,
        )
