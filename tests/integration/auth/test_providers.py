"""hs256 and static providers per role, and the allow_producer_as_worker dev flag."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import trio

from tests.integration.auth.conftest import serving
from tests.integration.conftest import make_config

SECRET_P = "p" * 40
SECRET_W = "w" * 40
MISSING = "01a207b1-88ed-78c7-89ec-9d85f8c0b900"


def hs(secret: str, **claims: object) -> str:
    now = int(time.time())
    return jwt.encode({"iat": now, "exp": now + 600, **claims}, secret, algorithm="HS256")


async def test_hs256_per_role_with_issuer_and_audience(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config = make_config(
        tmp_path,
        auth={
            "mode": "jwt",
            "producer": {
                "provider": "hs256",
                "secret": SECRET_P,
                "issuer": "me",
                "audience": "codeq-producer",
            },
            "worker": {"provider": "hs256", "secret": SECRET_W, "audience": "codeq-worker"},
        },
    )
    producer = hs(SECRET_P, sub="p", iss="me", aud="codeq-producer", tenantId="t")
    worker = hs(
        SECRET_W,
        sub="w",
        aud=["codeq-worker"],
        tenant_id="t",
        eventTypes=["c"],
        scope="codeq:claim",
    )
    async with serving(nursery, config, redis_url) as api:
        r = await api.call("POST", "/tasks", producer, {"command": "c", "payload": {}})
        assert r.status_code == 202, r.text
        r = await api.claim(worker)
        assert r.status_code == 200 and r.json()["tenantId"] == "t"
        # Each role's secret only verifies its own tokens; the other role's token is 403.
        assert (await api.claim(producer)).status_code == 403
        r = await api.call("POST", "/tasks", worker, {"command": "c", "payload": {}})
        assert r.status_code == 403
        crossed = hs(SECRET_W, sub="p", iss="me", aud="codeq-producer")
        r = await api.call("POST", "/tasks", crossed, {"command": "c", "payload": {}})
        assert r.status_code == 401 and r.json()["code"] == "invalid_signature"
        r = await api.call(
            "GET", f"/tasks/{MISSING}", hs(SECRET_P, sub="p", iss="you", aud="codeq-producer")
        )
        assert r.status_code == 401 and r.json()["code"] == "invalid_issuer"
        for token in (producer, worker):
            assert (await api.call("GET", f"/tasks/{MISSING}", token)).status_code == 404


async def test_a_tenant_claim_that_is_not_a_string_is_refused(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config = make_config(
        tmp_path,
        auth={
            "mode": "jwt",
            "producer": {"provider": "hs256", "secret": SECRET_P},
            "worker": {"provider": "hs256", "secret": SECRET_W},
        },
    )
    body = {"command": "c", "payload": {}}
    async with serving(nursery, config, redis_url) as api:
        for claim in ("tenantId", "tenant_id", "organizationId", "organization_id"):
            for value in (7, ["t"], {"id": "t"}, True, None, ""):
                token = hs(SECRET_P, sub="p", **{claim: value})
                r = await api.call("POST", "/tasks", token, body)
                assert r.status_code == 401, (claim, value, r.text)
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert r.json() == {
                    "error": f"token claim {claim!r} must be a non-empty string (the tenant id)",
                    "code": "invalid_claim",
                    "details": {"claim": claim},
                }
        # A later claim does not rescue an earlier bad one; a good first claim wins.
        bad_first = hs(SECRET_P, sub="p", tenantId=42, tenant_id="t")
        assert (await api.call("POST", "/tasks", bad_first, body)).status_code == 401
        good = hs(SECRET_P, sub="p", tenantId="t", tenant_id=42)
        r = await api.call("POST", "/tasks", good, body)
        assert r.status_code == 202 and r.json()["tenantId"] == "t", r.text
        # No tenant claim at all still means the tenant is the sub (SPEC §4).
        r = await api.call("POST", "/tasks", hs(SECRET_P, sub="solo"), body)
        assert r.status_code == 202 and r.json()["tenantId"] == "solo", r.text
        # Workers are held to the same rule.
        worker = hs(SECRET_W, sub="w", aud="codeq-worker", tenantId=1, scope="codeq:claim")
        r = await api.claim(worker)
        assert r.status_code == 401 and r.json()["details"] == {"claim": "tenantId"}, r.text


async def test_static_tokens_opaque_and_jwt_entries(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    admin_entry = jwt.encode({"sub": "ops", "role": "ADMIN", "tenantId": "t1"}, "u" * 32)
    config = make_config(
        tmp_path,
        auth={
            "mode": "jwt",
            "producer": {"provider": "static", "tokens": ["prod-token-1", admin_entry]},
            "worker": {"provider": "static", "tokens": ["worker-token-1"]},
        },
    )
    async with serving(nursery, config, redis_url) as api:
        r = await api.call("POST", "/tasks", "prod-token-1", {"command": "c", "payload": {}})
        assert r.status_code == 202 and r.json()["tenantId"] == "default"
        r = await api.claim("worker-token-1", commands=["c"])
        assert r.status_code == 200, r.text
        assert (await api.call("GET", "/admin/queues", admin_entry)).status_code == 200
        assert (await api.call("GET", "/admin/queues", "prod-token-1")).status_code == 403
        r = await api.call("POST", "/tasks", "prod-token-2", {"command": "c", "payload": {}})
        assert r.status_code == 401 and "static" in r.json()["error"]
        assert "prod-token-2" not in r.text


async def test_producer_as_worker_only_when_allowed(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    for allowed, status in ((False, 403), (True, 200)):
        config = make_config(tmp_path, auth={"allow_producer_as_worker": allowed})
        async with serving(nursery, config, redis_url) as api:
            await api.create("pw", {})
            assert (await api.claim(api.producer, commands=["pw"])).status_code == status
