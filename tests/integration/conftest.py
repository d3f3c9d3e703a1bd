"""Fixtures for integration tests: a Store on the real redis-server, and the real
HTTP app served by hypercorn on 127.0.0.1 inside the test's trio run."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from codeqd import config as cfgmod
from codeqd.auth import Authenticator, load_or_create_dev_secret, mint_dev_token
from codeqd.context import Context
from codeqd.http import serve
from codeqd.store import Store, WakeHub, connect
from tests.api import ApiCalls
from tests.conftest import merge


def make_config(tmp_path: Path, **overrides: Any) -> cfgmod.Config:
    """Defaults, with a private state dir and any dotted overrides (``{"tasks": {...}}``)."""
    data = {
        "state_dir": str(tmp_path / "state"),
        "actors": {"ingress": {"bind": "127.0.0.1:0", "processes": 1}},
    }
    data = merge(data, overrides)
    return cfgmod._build(cfgmod.Config, data, "")  # type: ignore[no-any-return]


@pytest.fixture
def config(tmp_path: Path) -> cfgmod.Config:
    return make_config(tmp_path)


@pytest.fixture
async def store(config: cfgmod.Config, redis_url: str) -> AsyncIterator[Store]:
    async with connect(config, redis_url) as s:
        await s.init_keyspace()
        yield s


class Api(ApiCalls):
    """An httpx client bound to the served app, with dev tokens for each role."""

    def __init__(self, ctx: Context, base: str, client: httpx.AsyncClient) -> None:
        self.ctx = ctx
        self.base = base
        self.http = client
        secret = load_or_create_dev_secret(ctx.config)
        self.producer = mint_dev_token(secret, "producer", sub="prod-1")
        self.admin = mint_dev_token(secret, "admin", sub="admin-1")
        self.worker = mint_dev_token(secret, "worker", sub="worker-1")
        self.secret = secret

    def token(self, role: str, **kw: Any) -> str:
        return mint_dev_token(self.secret, role, **kw)  # type: ignore[arg-type]


async def start_api(
    nursery: trio.Nursery, config: cfgmod.Config, redis_url: str
) -> AsyncIterator[Api]:
    async with connect(config, redis_url) as s:
        await s.init_keyspace()
        ctx = Context(config=config, store=s, hub=WakeHub(), auth=Authenticator(config))
        binds = await nursery.start(serve, ctx)
        base = binds[0]
        async with httpx.AsyncClient(timeout=40) as client:
            yield Api(ctx, base, client)
        ctx.shutting_down.set()


@pytest.fixture
async def api(nursery: trio.Nursery, config: cfgmod.Config, redis_url: str) -> AsyncIterator[Api]:
    async for a in start_api(nursery, config, redis_url):
        yield a


def with_overrides(config: cfgmod.Config, **sections: Any) -> cfgmod.Config:
    return dataclasses.replace(config, **sections)
