"""Verify bearer tokens for a role; dev mode verifies HS256 with the dev secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import jwt

from codeqd.auth._dev import load_or_create_dev_secret
from codeqd.auth._principal import ALL_WORKER_SCOPES, Principal, tenant_from_claims
from codeqd.config import Config
from codeqd.domain.errors import Forbidden, Unauthorized

WORKER_AUDIENCE = "codeq-worker"


def _bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    return token.strip()


def _is_admin(claims: Mapping[str, Any]) -> bool:
    roles = claims.get("roles")
    return claims.get("role") == "ADMIN" or (isinstance(roles, list) and "ADMIN" in roles)


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []


class Authenticator:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._secret = load_or_create_dev_secret(config)
        self._leeway = float(config.auth.clock_skew)

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                leeway=self._leeway,
                options={"verify_aud": False, "require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired", code="token_expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("token not yet valid", code="token_not_yet_valid") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("token signature invalid", code="invalid_signature") from None
        except jwt.MissingRequiredClaimError as e:
            raise Unauthorized(f"token lacks the {e.claim!r} claim", code="invalid_token") from None
        except jwt.InvalidTokenError as e:
            raise Unauthorized(f"invalid token: {e}", code="invalid_token") from None
        return claims

    def _producer(self, claims: Mapping[str, Any]) -> Principal:
        return Principal(
            sub=str(claims["sub"]),
            tenant=tenant_from_claims(claims),
            role="producer",
            is_admin=_is_admin(claims),
            claims=claims,
        )

    def _worker(self, claims: Mapping[str, Any]) -> Principal:
        events = claims.get("eventTypes") or []
        scope = claims.get("scope") or ""
        return Principal(
            sub=str(claims["sub"]),
            tenant=tenant_from_claims(claims),
            role="worker",
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            event_types=tuple(e for e in events if isinstance(e, str))
            if isinstance(events, list)
            else (),
            worker_group=claims.get("workerGroup") if isinstance(claims.get("workerGroup"), str)
            else None,
            claims=claims,
        )

    async def authenticate(
        self, header: str | None, role: Literal["producer", "worker", "any"]
    ) -> Principal:
        """Verify the header's token for ``role``; ``any`` accepts either kind."""
        claims = self._decode(_bearer(header))
        is_worker_token = WORKER_AUDIENCE in _audiences(claims)
        if role == "any":
            return self._worker(claims) if is_worker_token else self._producer(claims)
        if role == "worker":
            if is_worker_token:
                return self._worker(claims)
            if self._config.auth.allow_producer_as_worker:
                p = self._producer(claims)
                return Principal(
                    sub=p.sub, tenant=p.tenant, role="worker", scopes=ALL_WORKER_SCOPES,
                    event_types=("*",), claims=claims,
                )
            raise Forbidden("a worker token is required (audience 'codeq-worker')")
        if is_worker_token:
            raise Forbidden("a producer token is required; this is a worker token")
        return self._producer(claims)
