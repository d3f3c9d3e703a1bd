"""JWT checks every provider shares: header and algorithm policy, signature, time claims.

Every failure is an ``Unauthorized`` whose message names the reason and whose
``code`` is stable for clients; no message ever contains the token or text
PyJWT derived from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.types import Options

from codeqd.domain.errors import Unauthorized

SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})


def unauthorized(message: str, code: str) -> Unauthorized:
    return Unauthorized(message, code=code)


def token_header(token: str) -> dict[str, Any]:
    """The unverified JOSE header: only used to pick the algorithm and the key."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise unauthorized(
            "invalid token: not a well-formed JWT (expected header.payload.signature)",
            "malformed_token",
        ) from None
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise unauthorized("invalid token: header has no 'alg'", "malformed_token")
    return header


def check_algorithm(alg: str, allowed: Collection[str]) -> None:
    """Refuse ``none`` always, and anything outside ``allowed`` (algorithm confusion)."""
    if alg.lower() == "none":
        raise unauthorized(
            "token algorithm 'none' is refused: unsigned tokens are never accepted",
            "alg_not_allowed",
        )
    if alg not in allowed:
        raise unauthorized(
            f"token algorithm {alg[:16]!r} is not accepted here "
            f"(expected {', '.join(sorted(allowed))})",
            "alg_not_allowed",
        )


@dataclass(frozen=True)
class ClaimRules:
    """What a provider requires beyond a valid signature."""

    issuer: str = ""
    audience: str = ""
    leeway: float = 60.0
    require_exp: bool = True


def decode(token: str, key: Any, alg: str, rules: ClaimRules) -> dict[str, Any]:
    """Verify the signature (with ``alg`` only), ``iss`` and ``aud``; time claims are
    checked by ``check_times`` against codeqd's own clock."""
    options: Options = {
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
        "verify_aud": bool(rules.audience),
        "verify_iss": bool(rules.issuer),
        "require": ["sub"],
    }
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[alg],
            options=options,
            audience=rules.audience or None,
            issuer=rules.issuer or None,
        )
    except jwt.InvalidSignatureError:
        raise unauthorized("token signature invalid", "invalid_signature") from None
    except jwt.InvalidAudienceError:
        raise unauthorized(
            f"token audience does not include {rules.audience!r}", "invalid_audience"
        ) from None
    except jwt.InvalidIssuerError:
        raise unauthorized(f"token issuer is not {rules.issuer!r}", "invalid_issuer") from None
    except jwt.MissingRequiredClaimError as e:
        raise unauthorized(f"token lacks the {e.claim!r} claim", "missing_claim") from None
    except jwt.InvalidAlgorithmError:
        raise unauthorized(
            f"token algorithm {alg[:16]!r} does not match the key", "alg_not_allowed"
        ) from None
    except jwt.DecodeError:
        raise unauthorized(
            "invalid token: payload or signature is not decodable", "malformed_token"
        ) from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise unauthorized("invalid token", "invalid_token") from None
    return claims


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise unauthorized(
            f"token claim {name!r} must be a number (seconds since the epoch)", "invalid_claim"
        )
    return float(value)


def check_times(claims: Mapping[str, Any], now: float, rules: ClaimRules) -> None:
    """``exp`` (required unless the provider says otherwise), ``nbf`` and ``iat``, each
    with ``rules.leeway`` seconds of allowance for clock differences."""
    exp = _number(claims, "exp")
    if exp is None:
        if rules.require_exp:
            raise unauthorized("token lacks the 'exp' claim", "missing_claim")
    elif now > exp + rules.leeway:
        raise unauthorized(f"token expired {int(now - exp)} s ago", "token_expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and now + rules.leeway < nbf:
        raise unauthorized(
            f"token not yet valid (nbf is {int(nbf - now)} s ahead)", "token_not_yet_valid"
        )
    iat = _number(claims, "iat")
    if iat is not None and now + rules.leeway < iat:
        raise unauthorized(
            f"token not yet valid (issued {int(iat - now)} s in the future)", "token_not_yet_valid"
        )


Clock = Callable[[], float]
