"""Shared-secret verification: ``hs256`` providers and dev mode (the ``codeqd token`` secret)."""

from __future__ import annotations

from typing import Any

from codeqd.auth._jwt import ClaimRules, check_algorithm, check_times, decode, token_header


class HS256Verifier:
    """HS256 only: a token claiming any other algorithm is refused before any key is used."""

    def __init__(self, secret: str, rules: ClaimRules) -> None:
        self._secret = secret
        self._rules = rules

    async def verify(self, token: str, now: float) -> dict[str, Any]:
        alg = token_header(token)["alg"]
        check_algorithm(alg, ("HS256",))
        claims = decode(token, self._secret, alg, self._rules)
        check_times(claims, now, self._rules)
        return claims
