"""jwks provider against a real JWKS server: algorithms, every 401 reason, rotation,
the refresh cooldown under a flood of unknown key ids, and JWKS outages."""

from __future__ import annotations

import base64
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import trio
from cryptography.hazmat.primitives import serialization

from codeqd.auth import JwksKeys
from codeqd.domain.errors import Unauthorized
from tests.integration.auth.conftest import (
    WORKER_AUD,
    JwksServer,
    claims,
    jwt_config,
    new_key,
    serving,
)

MISSING = "01a207b1-88ed-78c7-89ec-9d85f8c0b900"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hmac_token(secret: bytes, header: dict[str, str], payload_b64: str) -> str:
    """A token MACed with ``secret``: with an RSA public key's PEM as the secret, the
    classic algorithm-confusion forgery."""
    signing_input = f"{b64(json.dumps(header).encode())}.{payload_b64}"
    return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), 'sha256').digest())}"


def assert_401(r: httpx.Response, token: str, code: str, *words: str) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    body = r.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["error"], body
    # Neither the token nor any of its segments comes back.
    for part in token.split("."):
        assert len(part) < 8 or part not in r.text


async def test_each_algorithm_is_accepted_for_both_roles(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str, jwks: JwksServer
) -> None:
    keys = [new_key("rs", "RS256"), new_key("es", "ES256"), new_key("ed", "EdDSA")]
    jwks.keys = keys
    async with serving(nursery, jwt_config(tmp_path, jwks), redis_url) as api:
        for key in keys:
            producer, worker = key.sign(claims()), key.sign(claims("worker", sub="w-1"))
            r = await api.call("POST", "/tasks", producer, {"command": "c", "payload": {}})
            assert r.status_code == 202, r.text
            r = await api.claim(worker, commands=["c"])
            assert r.status_code == 200, r.text
            assert r.json()["tenantId"] == "acme"
        assert jwks.hits == 1


async def test_bad_tokens_get_401_naming_the_reason(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str, jwks: JwksServer
) -> None:
    key = jwks.keys[0]
    other = new_key("k1-impostor")
    other.kid = "k1"  # same kid, different key: the signature cannot verify
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    good = key.sign(claims())
    head, payload, sig = good.split(".")
    forged_payload = b64(
        b'{"sub":"root","tenantId":"other","exp":9999999999,'
        b'"iss":"https://idp.test","aud":["codeq-producer"]}'
    )
    none_token = jwt.encode(claims(), None, algorithm="none")  # type: ignore[arg-type]
    hs_with_public_pem = hmac_token(pem, {"alg": "HS256", "typ": "JWT", "kid": "k1"}, payload)
    cases = [
        (key.sign(claims(ttl=-3600)), "token_expired", ["expired"]),
        (key.sign(claims(nbf=int(claims()["iat"]) + 3600)), "token_not_yet_valid", ["nbf"]),
        (key.sign(claims(iat=int(claims()["iat"]) + 3600)), "token_not_yet_valid", ["issued"]),
        (key.sign(claims(aud=["somebody-else"])), "invalid_audience", ["audience"]),
        (key.sign(claims(iss="https://evil.test")), "invalid_issuer", ["issuer"]),
        (none_token, "alg_not_allowed", ["none"]),
        (hs_with_public_pem, "alg_not_allowed", ["HS256"]),
        (f"{head}.{forged_payload}.{sig}", "invalid_signature", ["signature"]),
        (f"{head}.{payload}.{sig[:-4]}AAAA", "invalid_signature", ["signature"]),
        (other.sign(claims()), "invalid_signature", ["signature"]),
        (key.sign({k: v for k, v in claims().items() if k != "exp"}), "missing_claim", ["exp"]),
        (key.sign({k: v for k, v in claims().items() if k != "sub"}), "missing_claim", ["sub"]),
        (key.sign(claims(exp="tomorrow")), "invalid_claim", ["exp"]),
        ("not-a-jwt", "malformed_token", ["invalid token"]),
        ("a.b.c", "malformed_token", ["invalid token"]),
    ]
    async with serving(nursery, jwt_config(tmp_path, jwks), redis_url) as api:
        assert (await api.call("GET", f"/tasks/{MISSING}", good)).status_code == 404
        for token, code, words in cases:
            r = await api.call("POST", "/tasks", token, {"command": "c", "payload": {}})
            assert_401(r, token, code, *words)
            r = await api.call("GET", f"/tasks/{MISSING}", token)
            assert_401(r, token, code, *words)
        # A worker token for a producer route and the reverse are 403, not 401.
        worker = key.sign(claims("worker"))
        r = await api.call("POST", "/tasks", worker, {"command": "c", "payload": {}})
        assert r.status_code == 403 and "producer token" in r.json()["error"]
        r = await api.claim(good)
        assert r.status_code == 403 and WORKER_AUD in r.json()["error"]


async def test_clock_skew_allowance(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str, jwks: JwksServer
) -> None:
    key = jwks.keys[0]
    async with serving(nursery, jwt_config(tmp_path, jwks), redis_url) as api:
        # Default 60 s: 30 s past exp or 30 s before nbf still pass; 90 s does not.
        cases: list[tuple[dict[str, Any], int]] = [
            ({"ttl": -30}, 404),
            ({"ttl": -90}, 401),
            ({"nbf": int(claims()["iat"]) + 30}, 404),
            ({"nbf": int(claims()["iat"]) + 90}, 401),
        ]
        for extra, status in cases:
            r = await api.call("GET", f"/tasks/{MISSING}", key.sign(claims(**extra)))
            assert r.status_code == status, (extra, r.text)


async def test_key_rotation_mid_test(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str, jwks: JwksServer
) -> None:
    old, new = jwks.keys[0], new_key("k2", "ES256")
    config = jwt_config(tmp_path, jwks, jwks_refresh_cooldown="0s")
    async with serving(nursery, config, redis_url) as api:
        old_token = old.sign(claims())
        assert (await api.call("GET", f"/tasks/{MISSING}", old_token)).status_code == 404
        # Rotation step 1: publish the new key next to the old one; new tokens work at once.
        jwks.keys = [old, new]
        new_token = new.sign(claims())
        assert (await api.call("GET", f"/tasks/{MISSING}", new_token)).status_code == 404
        assert (await api.call("GET", f"/tasks/{MISSING}", old_token)).status_code == 404
        assert jwks.hits == 2
        # Step 2: retire the old key; once the set is re-read its tokens are refused.
        jwks.keys = [new]
        assert_401(
            await api.call("GET", f"/tasks/{MISSING}", new_key("k3").sign(claims())),
            "",
            "unknown_key",
            "unknown key",
        )
        assert_401(
            await api.call("GET", f"/tasks/{MISSING}", old_token), old_token, "unknown_key", "k1"
        )
        assert (await api.call("GET", f"/tasks/{MISSING}", new_token)).status_code == 404


async def test_flood_of_unknown_kids_fetches_once_per_cooldown(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str, jwks: JwksServer
) -> None:
    key = jwks.keys[0]
    async with serving(nursery, jwt_config(tmp_path, jwks), redis_url) as api:
        assert (await api.call("GET", f"/tasks/{MISSING}", key.sign(claims()))).status_code == 404
        statuses: list[int] = []

        async def bad(i: int) -> None:
            token = key.sign(claims(), kid=f"made-up-{i}")
            statuses.append((await api.call("GET", f"/tasks/{MISSING}", token)).status_code)

        async with trio.open_nursery() as flood:
            for i in range(60):
                flood.start_soon(bad, i)
        assert statuses == [401] * 60
        assert jwks.hits == 1  # the first use counts: no refresh within the cooldown
        assert (await api.call("GET", f"/tasks/{MISSING}", key.sign(claims()))).status_code == 404


async def test_jwks_outage_cached_keys_keep_working_unknown_keys_get_503(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str, jwks: JwksServer
) -> None:
    key, later = jwks.keys[0], new_key("k-later", "EdDSA")
    config = jwt_config(tmp_path, jwks, jwks_refresh_cooldown="0s", jwks_cache_ttl="0s")
    async with serving(nursery, config, redis_url) as api:
        token = key.sign(claims())
        assert (await api.call("GET", f"/tasks/{MISSING}", token)).status_code == 404
        jwks.fail = True
        # TTL 0: every request tries a refresh, which fails; the cached key still verifies.
        for _ in range(3):
            assert (await api.call("GET", f"/tasks/{MISSING}", token)).status_code == 404
        r = await api.call("GET", f"/tasks/{MISSING}", later.sign(claims()))
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "jwks_unavailable" and r.headers["Retry-After"]
        jwks.fail = False
        jwks.keys = [key, later]
        assert (await api.call("GET", f"/tasks/{MISSING}", later.sign(claims()))).status_code == 404


async def test_jwks_unreachable_from_the_start_is_503(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str, jwks: JwksServer
) -> None:
    jwks.fail = True
    async with serving(nursery, jwt_config(tmp_path, jwks), redis_url) as api:
        r = await api.call(
            "POST", "/tasks", jwks.keys[0].sign(claims()), {"command": "c", "payload": {}}
        )
        assert r.status_code == 503 and r.json()["code"] == "jwks_unavailable"


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_key_of_another_type_than_the_token_alg_is_refused(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str, jwks: JwksServer, alg: str
) -> None:
    key = new_key("k1", alg)
    jwks.keys = [key]
    liar = new_key("k1", "ES256" if alg != "ES256" else "EdDSA")  # signs with a different alg
    async with serving(nursery, jwt_config(tmp_path, jwks), redis_url) as api:
        token = liar.sign(claims())
        r = await api.call("GET", f"/tasks/{MISSING}", token)
        assert_401(r, token, "alg_not_allowed", "does not match")


async def test_unknown_kid_refreshes_once_per_cooldown(jwks: JwksServer) -> None:
    now = [1000.0]
    keys = JwksKeys(jwks.url, ttl=300, cooldown=30, timeout=5, clock=lambda: now[0])
    assert (await keys.key("k1", "RS256")).key_id == "k1"
    for i in range(20):
        with pytest.raises(Unauthorized, match="unknown key"):
            await keys.key(f"bad-{i}", "RS256")
    assert jwks.hits == 1
    jwks.keys.append(new_key("k2", "EdDSA"))
    now[0] += 29
    with pytest.raises(Unauthorized, match="unknown key"):
        await keys.key("k2", "EdDSA")
    now[0] += 1
    assert (await keys.key("k2", "EdDSA")).key_id == "k2"
    assert jwks.hits == 2
    for i in range(20):
        with pytest.raises(Unauthorized, match="unknown key"):
            await keys.key(f"bad-again-{i}", "RS256")
    assert jwks.hits == 2
    # Past the TTL the set is re-read once, by the first request that notices.
    now[0] += 300
    await keys.key("k1", "RS256")
    await keys.key("k1", "RS256")
    assert jwks.hits == 3
