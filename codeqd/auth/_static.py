"""The ``static`` provider: a configured list of accepted tokens, for development.

An entry that is a JWT is accepted verbatim and its claims are read without a
signature check (the exact string is the credential; ``exp``/``nbf`` still
apply). Any other entry is an opaque token with ``sub = static-<hash prefix>``,
tenant ``default``, and for workers every scope and ``eventTypes ["*"]``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jwt

from codeqd.auth._jwt import ClaimRules, check_times, unauthorized
from codeqd.auth._principal import ALL_WORKER_SCOPES

WORKER_AUDIENCE = "codeq-worker"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _claims_of(entry: str, role: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(entry, options={"verify_signature": False})
        return claims
    except jwt.PyJWTError:
        pass
    claims = {"sub": f"static-{_digest(entry).hex()[:12]}", "tenantId": "default"}
    if role == "worker":
        claims.update(
            aud=[WORKER_AUDIENCE], eventTypes=["*"], scope=" ".join(sorted(ALL_WORKER_SCOPES))
        )
    return claims


class StaticVerifier:
    def __init__(self, tokens: list[str], role: str, rules: ClaimRules) -> None:
        # Looked up by digest: the comparison does not leak how much of a token matched.
        self._claims = {_digest(t): _claims_of(t, role) for t in tokens}
        self._rules = ClaimRules(leeway=rules.leeway, require_exp=False)

    async def verify(self, token: str, now: float) -> dict[str, Any]:
        claims = self._claims.get(_digest(token))
        if claims is None:
            raise unauthorized(
                "invalid token: not one of the configured static tokens", "invalid_token"
            )
        check_times(claims, now, self._rules)
        return claims
