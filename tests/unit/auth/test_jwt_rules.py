"""Pure checks: time claims with skew, algorithm policy, HS256 and static providers,
tenant resolution, eventTypes subsets, provider config validation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from codeqd import config as cfgmod
from codeqd.auth import ClaimRules, HS256Verifier, Principal, StaticVerifier, tenant_from_claims
from codeqd.auth._jwt import check_algorithm, check_times, decode
from codeqd.domain.errors import Unauthorized

SECRET = "s" * 32
RULES = ClaimRules(leeway=60)


def code_of(fn: Any, *args: Any) -> str:
    with pytest.raises(Unauthorized) as info:
        fn(*args)
    return str(info.value.code)


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"exp": 1000 - 61}, "token_expired"),
        ({"exp": 1000 - 59}, ""),
        ({"exp": 2000, "nbf": 1000 + 61}, "token_not_yet_valid"),
        ({"exp": 2000, "nbf": 1000 + 59}, ""),
        ({"exp": 2000, "iat": 1000 + 61}, "token_not_yet_valid"),
        ({}, "missing_claim"),
        ({"exp": "2000"}, "invalid_claim"),
        ({"exp": True}, "invalid_claim"),
        ({"exp": float("nan")}, "invalid_claim"),
    ],
)
def test_time_claims_with_skew(claims: dict[str, Any], code: str) -> None:
    if code:
        assert code_of(check_times, claims, 1000.0, RULES) == code
    else:
        check_times(claims, 1000.0, RULES)


def test_algorithm_policy() -> None:
    assert code_of(check_algorithm, "none", {"RS256"}) == "alg_not_allowed"
    assert code_of(check_algorithm, "NONE", {"RS256"}) == "alg_not_allowed"
    assert code_of(check_algorithm, "HS256", {"RS256", "ES256"}) == "alg_not_allowed"
    check_algorithm("ES256", {"RS256", "ES256"})


async def test_hs256_refuses_none_confusion_and_wrong_secret() -> None:
    verifier = HS256Verifier(SECRET, RULES)
    now = time.time()
    good = jwt.encode({"sub": "a", "exp": now + 60}, SECRET, algorithm="HS256")
    assert (await verifier.verify(good, now))["sub"] == "a"
    cases = {
        jwt.encode(
            {"sub": "a", "exp": now + 60},
            None,  # type: ignore[arg-type]
            algorithm="none",
        ): "alg_not_allowed",
        jwt.encode({"sub": "a", "exp": now + 60}, "x" * 32, algorithm="HS256"): "invalid_signature",
        jwt.encode(
            {"sub": "a", "exp": now + 60},
            ec.generate_private_key(ec.SECP256R1()),
            algorithm="ES256",
        ): "alg_not_allowed",
        jwt.encode({"exp": now + 60}, SECRET, algorithm="HS256"): "missing_claim",
        jwt.encode({"sub": "a", "exp": now - 600}, SECRET, algorithm="HS256"): "token_expired",
    }
    for token, code in cases.items():
        with pytest.raises(Unauthorized) as info:
            await verifier.verify(token, now)
        assert info.value.code == code
        assert token not in info.value.message


def _pem_pair(alg: str) -> tuple[bytes, str]:
    """A fresh key for ``alg``: (private key PEM, public key PEM)."""
    private: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if alg == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return (
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_forged_with(secret: str, claims: dict[str, Any]) -> str:
    """An HS256 token MACed with ``secret`` by hand (PyJWT refuses to make one with a PEM)."""
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url(mac)}"


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_a_pem_signed_token_is_accepted_by_its_key_only(alg: str) -> None:
    private, public = _pem_pair(alg)
    _, other_public = _pem_pair(alg)
    claims = {"sub": "a", "exp": time.time() + 60}
    token = jwt.encode(claims, private, algorithm=alg)
    assert decode(token, public, alg, RULES)["sub"] == "a"
    assert code_of(decode, token, other_public, alg, RULES) == "invalid_signature"
    # The algorithm is the verifier's, never the token's: the same key under another
    # asymmetric algorithm, or as an HMAC secret, does not verify it.
    assert code_of(decode, token, public, "HS256", RULES) == "alg_not_allowed"


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_hs_rs_confusion_with_the_public_pem_is_refused(alg: str) -> None:
    # The classic confusion: the attacker knows the public key and MACs an HS256 token
    # with its PEM text. The MAC is genuinely right for that secret...
    _, public = _pem_pair(alg)
    claims = {"sub": "attacker", "exp": time.time() + 60}
    forged = _hs256_forged_with(public, claims)
    head, body, mac = forged.split(".")
    expected = hmac.new(public.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert _b64url(expected) == mac
    # ...yet a verifier expecting the asymmetric algorithm refuses the token's HS256,
    assert code_of(decode, forged, public, alg, RULES) == "alg_not_allowed"
    assert code_of(check_algorithm, "HS256", {alg}) == "alg_not_allowed"
    # and an hs256 provider misconfigured with that PEM as its secret refuses to use a
    # public key as an HMAC secret at all.
    with pytest.raises(Unauthorized) as info:
        await HS256Verifier(public, RULES).verify(forged, time.time())
    assert info.value.code == "invalid_token"
    # Control: the same construction with an ordinary secret is accepted, so the refusals
    # above are about the key, not about the hand-made token.
    assert (await HS256Verifier(SECRET, RULES).verify(_hs256_forged_with(SECRET, claims), 0))[
        "sub"
    ] == "attacker"


async def test_static_tokens() -> None:
    entry = jwt.encode({"sub": "ops", "tenantId": "t", "exp": 500}, "k" * 32)
    verifier = StaticVerifier(["opaque-1", entry], "worker", RULES)
    claims = await verifier.verify("opaque-1", 0)
    assert claims["aud"] == ["codeq-worker"] and claims["eventTypes"] == ["*"]
    assert (await verifier.verify(entry, 0))["sub"] == "ops"
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(entry, 1000)
    with pytest.raises(Unauthorized, match="static"):
        await verifier.verify("opaque-2", 0)


def test_tenant_order_and_event_types() -> None:
    full = {
        "tenantId": "a",
        "tenant_id": "b",
        "organizationId": "c",
        "organization_id": "d",
        "sub": "e",
    }
    for drop, want in [
        ((), "a"),
        (("tenantId",), "b"),
        (("tenantId", "tenant_id"), "c"),
        (("tenantId", "tenant_id", "organizationId"), "d"),
        (("tenantId", "tenant_id", "organizationId", "organization_id"), "e"),
    ]:
        assert tenant_from_claims({k: v for k, v in full.items() if k not in drop}) == want
    for bad in (1, None, "", ["a"]):
        with pytest.raises(Unauthorized) as info:
            tenant_from_claims({"tenant_id": bad, "sub": "e"})
        assert info.value.code == "invalid_claim" and info.value.details == {"claim": "tenant_id"}
    p = Principal(sub="w", tenant="t", role="worker", event_types=("a", "b"))
    assert p.denied_events(["a", "c", "b", "d"]) == ["c", "d"]
    assert (
        Principal(sub="w", tenant="t", role="worker", event_types=("*",)).denied_events(["x"]) == []
    )
    assert Principal(sub="r", tenant="*", role="producer", is_admin=True).all_tenants
    assert not Principal(sub="r", tenant="*", role="producer").all_tenants


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ({"provider": "jwks"}, "jwks_url"),
        ({"provider": "jwks", "jwks_url": "http://idp.example/jwks"}, "https"),
        (
            {"provider": "jwks", "jwks_url": "https://idp/jwks", "algorithms": ["HS256"]},
            "asymmetric",
        ),
        ({"provider": "hs256", "secret": "short"}, "32 bytes"),
        ({"provider": "static"}, "tokens"),
        ({"provider": "ldap"}, "provider"),
    ],
)
def test_provider_config_is_validated(provider: dict[str, Any], message: str) -> None:
    with pytest.raises(cfgmod.ConfigError, match=message):
        cfgmod.load(
            None,
            {
                "CODEQD_AUTH__MODE": '"jwt"',
                **{
                    f"CODEQD_AUTH__WORKER__{k.upper()}": repr(v).replace("'", '"')
                    for k, v in provider.items()
                },
            },
        )


def test_ratelimit_config() -> None:
    config = cfgmod.load(
        None,
        {
            "CODEQD_RATELIMIT__ENABLED": "true",
            "CODEQD_RATELIMIT__CREATE__RATE": "5",
            "CODEQD_RATELIMIT__CREATE__BURST": "10",
        },
    )
    assert config.ratelimit.enabled and config.ratelimit.create.rate == 5.0
    with pytest.raises(cfgmod.ConfigError, match=r"ratelimit.claim.burst"):
        cfgmod.load(None, {"CODEQD_RATELIMIT__CLAIM__BURST": "0"})
