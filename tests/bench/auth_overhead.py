"""JWT verification overhead: create req/s with static vs jwks RS256 auth in one run, and
the per-request cost of the verification itself on the JWKS cache-hit path.

    python -m tests.bench.auth_overhead [seconds-per-mode] [concurrency]

Real redis-server and a real JWKS server on 127.0.0.1; server and load generator
share one trio run (one core), so compare the modes with each other, not with
figures from a separate load generator.
"""

from __future__ import annotations

import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx
import structlog
import trio

from codeqd import config as cfgmod
from codeqd.auth import Authenticator
from codeqd.context import Context
from codeqd.http import serve
from codeqd.store import WakeHub, connect
from tests.conftest import RedisServer
from tests.integration.auth.conftest import ISSUER, PRODUCER_AUD, JwksServer, claims, new_key
from tests.integration.conftest import make_config

STATIC_TOKEN = "bench-static-token-0123456789"


def configs(tmp: Path, jwks_url: str) -> dict[str, cfgmod.Config]:
    return {
        "static": make_config(
            tmp / "s",
            auth={"mode": "jwt", "producer": {"provider": "static", "tokens": [STATIC_TOKEN]}},
        ),
        "jwks-rs256": make_config(
            tmp / "j",
            auth={
                "mode": "jwt",
                "producer": {
                    "provider": "jwks",
                    "jwks_url": jwks_url,
                    "issuer": ISSUER,
                    "audience": PRODUCER_AUD,
                },
            },
        ),
    }


async def creates_per_second(
    config: cfgmod.Config, url: str, token: str, seconds: float, concurrency: int
) -> float:
    async with connect(config, url) as store, trio.open_nursery() as nursery:
        await store.init_keyspace()
        ctx = Context(config=config, store=store, hub=WakeHub(), auth=Authenticator(config))
        base = (await nursery.start(serve, ctx))[0]
        done = 0
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=base, limits=limits) as client:
            headers = {"Authorization": f"Bearer {token}"}
            body = {"command": "bench", "payload": {"n": 1}}
            assert (
                await client.post("/v1/codeq/tasks", json=body, headers=headers)
            ).status_code == 202
            deadline = trio.current_time() + seconds

            async def loop() -> None:
                nonlocal done
                while trio.current_time() < deadline:
                    r = await client.post("/v1/codeq/tasks", json=body, headers=headers)
                    assert r.status_code == 202, r.text
                    done += 1

            start = trio.current_time()
            async with trio.open_nursery() as load:
                for _ in range(concurrency):
                    load.start_soon(loop)
            elapsed = trio.current_time() - start
        ctx.shutting_down.set()
        nursery.cancel_scope.cancel()
    return done / elapsed


async def verify_cost(config: cfgmod.Config, token: str, n: int) -> float:
    auth = Authenticator(config)
    header = f"Bearer {token}"
    await auth.authenticate(header, "producer")  # fills the JWKS cache
    start = time.perf_counter()
    for _ in range(n):
        await auth.authenticate(header, "producer")
    return (time.perf_counter() - start) / n * 1e6


async def verify_cost_uncached(config: cfgmod.Config, tokens: list[str]) -> float:
    """Distinct tokens: every call verifies a signature (JWKS key cache hit)."""
    auth = Authenticator(config)
    await auth.authenticate(f"Bearer {tokens[0]}", "producer")
    start = time.perf_counter()
    for token in tokens[1:]:
        await auth.authenticate(f"Bearer {token}", "producer")
    return (time.perf_counter() - start) / (len(tokens) - 1) * 1e6


async def main(seconds: float, concurrency: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    tmp = Path(tempfile.mkdtemp(prefix="codeqd-bench-"))
    redis = RedisServer(tmp)
    redis.start()
    try:
        async with trio.open_nursery() as nursery:
            jwks = JwksServer()
            key = new_key("bench-rs256", "RS256")
            jwks.keys = [key]
            await jwks.start(nursery)
            rs256 = key.sign(claims(ttl=3600))
            cfgs = configs(tmp, jwks.url)
            tokens = {"static": STATIC_TOKEN, "jwks-rs256": rs256}
            print(f"create req/s, {concurrency} concurrent clients, {seconds:g} s per mode")
            rates: dict[str, list[float]] = {}
            for name in ("static", "jwks-rs256", "static", "jwks-rs256"):
                rate = await creates_per_second(
                    cfgs[name], redis.url, tokens[name], seconds, concurrency
                )
                rates.setdefault(name, []).append(rate)
                print(f"  {name:11s} {rate:8.0f} req/s")
            s, j = max(rates["static"]), max(rates["jwks-rs256"])
            print(
                f"  best of 2: static {s:.0f}, jwks RS256 {j:.0f} "
                f"({(1 - j / s) * 100:.1f}% fewer; {(1 / j - 1 / s) * 1e6:.0f} us per request)"
            )
            print("authenticate() per call:")
            for name in ("static", "jwks-rs256"):
                us = await verify_cost(cfgs[name], tokens[name], 3000)
                print(f"  {name:11s} {us:8.1f} us  (same token again: verified-token cache hit)")
            fresh = [key.sign(claims(ttl=3600, jti=str(i))) for i in range(1001)]
            us = await verify_cost_uncached(cfgs["jwks-rs256"], fresh)
            print(
                f"  jwks-rs256  {us:8.1f} us  (a new token each call: RS256 check, JWKS key "
                "cache hit)"
            )
            nursery.cancel_scope.cancel()
    finally:
        redis.stop()


if __name__ == "__main__":
    trio.run(
        partial(
            main,
            float(sys.argv[1]) if len(sys.argv) > 1 else 5.0,
            int(sys.argv[2]) if len(sys.argv) > 2 else 16,
        )
    )
