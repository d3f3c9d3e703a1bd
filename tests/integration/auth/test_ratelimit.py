"""Token buckets per bearer token: 429 with Retry-After and the SPEC body, recovery as
the (injected) clock advances, separate buckets per token, fail-open on store errors."""

from __future__ import annotations

import time
from pathlib import Path

import structlog
import trio

from codeqd.config import RateBucket
from codeqd.store import connect
from codeqd.store._ratelimit import bucket_key, take
from tests.conftest import RedisServer
from tests.integration.auth.conftest import serving
from tests.integration.conftest import make_config


async def test_create_claim_and_cleanup_are_limited_then_recover(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config = make_config(
        tmp_path,
        ratelimit={
            "enabled": True,
            "create": {"rate": 1.0, "burst": 2},
            "claim": {"rate": 2.0, "burst": 1},
            "cleanup": {"rate": 0.1, "burst": 1},
        },
    )
    async with serving(nursery, config, redis_url) as api:
        now = [time.time()]
        api.ctx.auth.clock = lambda: now[0]
        body = {"command": "c", "payload": {}}
        assert [
            (await api.call("POST", "/tasks", api.producer, body)).status_code for _ in range(2)
        ] == [202, 202]
        r = await api.call("POST", "/tasks", api.producer, body)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        assert r.json() == {
            "error": "rate limit exceeded for create_task; retry later",
            "code": "rate_limited",
            "scope": "producer",
            "operation": "create_task",
            "retryAfterSeconds": 1,
        }
        # Another token has its own bucket; reads are not limited.
        other = api.token("producer", sub="p2")
        assert (await api.call("POST", "/tasks", other, body)).status_code == 202
        assert (await api.call("GET", "/tasks/x", api.producer)).status_code == 404
        now[0] += 1.0
        assert (await api.call("POST", "/tasks", api.producer, body)).status_code == 202
        assert (await api.call("POST", "/tasks", api.producer, body)).status_code == 429

        assert (await api.claim(commands=["c"])).status_code == 200
        r = await api.claim(commands=["c"])
        assert r.status_code == 429 and r.json()["operation"] == "claim"
        now[0] += 0.5
        assert (await api.claim(commands=["c"])).status_code == 200

        assert (await api.call("POST", "/admin/tasks/cleanup", api.admin, {})).status_code == 200
        r = await api.call("POST", "/admin/tasks/cleanup", api.admin, {})
        assert r.status_code == 429 and r.headers["Retry-After"] == "10"
        assert r.json()["scope"] == "admin" and r.json()["retryAfterSeconds"] == 10


async def test_keys_hold_a_hash_of_the_token_never_the_token(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config = make_config(tmp_path, ratelimit={"enabled": True})
    async with serving(nursery, config, redis_url) as api:
        assert (
            await api.call("POST", "/tasks", api.producer, {"command": "c", "payload": {}})
        ).status_code == 202
        keys = sorted(await api.ctx.store.client.keys("*rl*"))
        assert len(keys) == 1 and keys[0].endswith(":create") and "{" in keys[0]
        dump = str(keys) + str(await api.ctx.store.client.hgetall(keys[0]))
        assert api.producer not in dump and api.producer.split(".")[2] not in dump


async def test_limiter_fails_open_when_the_store_is_down(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    config = make_config(tmp_path, store={"command_timeout": "1s", "connect_timeout": "300ms"})
    async with connect(config, server.url) as store:
        bucket = RateBucket(rate=1.0, burst=1)
        assert (await take(store, "ab" * 32, "create", bucket, 0)).allowed
        assert not (await take(store, "ab" * 32, "create", bucket, 0)).allowed
        assert bucket_key(store, "ab" * 32, "create").count("{") == 1
        server.stop(kill=True)
        with structlog.testing.capture_logs() as logs:
            decision = await take(store, "ab" * 32, "create", bucket, 0)
        assert decision.allowed
        assert [e["event"] for e in logs] == ["ratelimit.store_error"]
