"""Token buckets per verified caller: 429 with Retry-After and the SPEC body, recovery as
the (injected) clock advances, one bucket for all tokens of a caller, batches charged
per item, fail-open on store errors."""

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
        # Another caller has its own bucket; reads are not limited.
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


async def test_every_token_of_one_caller_shares_its_bucket(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config = make_config(
        tmp_path, ratelimit={"enabled": True, "create": {"rate": 0.01, "burst": 2}}
    )
    async with serving(nursery, config, redis_url) as api:
        body = {"command": "c", "payload": {}}
        # Distinct tokens (lifetimes differ) of the same tenant + sub: `token=` twice.
        first = api.token("producer", sub="same", tenant="t1")
        second = api.token("producer", sub="same", tenant="t1", ttl=7200)
        assert first != second
        assert (await api.call("POST", "/tasks", first, body)).status_code == 202
        assert (await api.call("POST", "/tasks", second, body)).status_code == 202
        r = await api.call("POST", "/tasks", second, body)
        assert r.status_code == 429, r.text
        assert (await api.call("POST", "/tasks", first, body)).status_code == 429
        # Same sub in another tenant, another sub in the same tenant: other callers.
        for other in (
            api.token("producer", sub="same", tenant="t2"),
            api.token("producer", sub="other", tenant="t1"),
        ):
            assert (await api.call("POST", "/tasks", other, body)).status_code == 202
        # A sub full of hash-tag and separator characters stays inside one tag.
        odd = api.token("producer", sub="}{x:rl:{", tenant="t1")
        assert (await api.call("POST", "/tasks", odd, body)).status_code == 202
        keys = await api.ctx.store.client.keys("*:rl:*")
        assert len(keys) == 4
        for key in keys:
            assert key.count("{") == 1 and key.count("}") == 1 and "same" not in key


async def test_batches_are_charged_per_item(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config = make_config(
        tmp_path,
        ratelimit={
            "enabled": True,
            "create": {"rate": 2.0, "burst": 10},
            "claim": {"rate": 2.0, "burst": 10},
        },
    )
    async with serving(nursery, config, redis_url) as api:
        now = [time.time()]
        api.ctx.auth.clock = lambda: now[0]
        tasks = [{"command": "c", "payload": {"i": i}} for i in range(6)]
        r = await api.call("POST", "/tasks/batch", api.producer, {"tasks": tasks})
        assert r.status_code == 202, r.text
        # 4 tokens left: a batch of 6 does not fit, one of 4 does, then nothing does.
        r = await api.call("POST", "/tasks/batch", api.producer, {"tasks": tasks})
        assert r.status_code == 429 and r.headers["Retry-After"] == "1", r.text
        assert r.json() == {
            "error": "rate limit exceeded for create_task (6 items; "
            "ratelimit.create.burst 10); retry later",
            "code": "rate_limited",
            "scope": "producer",
            "operation": "create_task",
            "retryAfterSeconds": 1,  # 2 tokens short at 2 per second
        }
        r = await api.call("POST", "/tasks/batch", api.producer, {"tasks": tasks[:4]})
        assert r.status_code == 202, r.text
        body = {"command": "c", "payload": {}}
        assert (await api.call("POST", "/tasks", api.producer, body)).status_code == 429

        # A batch above burst is not refused for ever: it goes through on a full bucket
        # and leaves it in debt, so the long-run rate still holds.
        big = [{"command": "c", "payload": {"i": i}} for i in range(25)]
        r = await api.call("POST", "/tasks/batch", api.producer, {"tasks": big})
        assert r.status_code == 429 and r.json()["retryAfterSeconds"] == 5  # 10 tokens at 2/s
        now[0] += 5.0
        r = await api.call("POST", "/tasks/batch", api.producer, {"tasks": big})
        assert r.status_code == 202, r.text
        r = await api.call("POST", "/tasks", api.producer, body)
        assert r.status_code == 429 and r.json()["retryAfterSeconds"] == 8  # 15 in debt + 1
        now[0] += 8.0
        assert (await api.call("POST", "/tasks", api.producer, body)).status_code == 202

        # A batch claim is charged its maxTasks, whatever it finds.
        r = await api.call("POST", "/tasks/claim/batch", api.worker, {"maxTasks": 8})
        assert r.status_code == 200 and len(r.json()["tasks"]) == 8
        r = await api.call("POST", "/tasks/claim/batch", api.worker, {"maxTasks": 3})
        assert r.status_code == 429 and r.json()["operation"] == "claim", r.text
        r = await api.call("POST", "/tasks/claim/batch", api.worker, {"maxTasks": 2})
        assert r.status_code == 200, r.text


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
