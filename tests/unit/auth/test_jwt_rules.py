"""Pure checks: time claims with skew, algorithm policy, HS256 and static providers,
tenant resolution, eventTypes subsets, provider config validation."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from codeqd import config as cfgmod
from codeqd.auth import ClaimRules, HS256Verifier, Principal, StaticVerifier, tenant_from_claims
from codeqd.auth._jwt import check_algorithm, check_times
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


async def test_public_key_pem_as_hmac_secret_is_refused() -> None:
    # A server configured with a PEM where a secret belongs must not accept HS256 tokens
    # MACed with that (public) PEM: PyJWT refuses such keys outright.
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    verifier = HS256Verifier(pem, RULES)
    with pytest.raises(Unauthorized):
        await verifier.verify("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", time.time())


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
