"""Webhook test fixtures: the API with a known HMAC secret, and actors run in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from codeqd import config as cfgmod
from codeqd.context import Context
from codeqd.live import Live
from tests.integration.conftest import make_config

SECRET = "test-hmac-secret"


@pytest.fixture
def config(tmp_path: Path) -> cfgmod.Config:
    # The receivers listen on 127.0.0.1, which the default (deny_private_networks) refuses.
    return make_config(tmp_path, webhooks={"hmac_secret": SECRET, "deny_private_networks": False})


async def start_dispatcher(
    nursery: trio.Nursery, ctx: Context, **values: Any
) -> Live[cfgmod.DispatcherConfig]:
    from codeqd.actors import dispatcher

    settings = {
        "interval": cfgmod.Duration(0.5),
        "timeout": cfgmod.Duration(2),
        "base_backoff": cfgmod.Duration(0.05),
        "max_backoff": cfgmod.Duration(0.2),
    }
    settings.update(
        {k: cfgmod.Duration(v) if isinstance(v, float) else v for k, v in values.items()}
    )
    live = Live(cfgmod.DispatcherConfig(**settings))
    await nursery.start(dispatcher.run, ctx, live)
    return live


def worker_token(api_secret: str, **claims: Any) -> str:
    """A dev worker token with extra or replaced claims (workerGroup, scope, ...)."""
    import jwt

    from codeqd.auth import mint_dev_token

    base = jwt.decode(
        mint_dev_token(
            api_secret,
            "worker",
            sub=claims.pop("sub", "w-1"),
            tenant=claims.pop("tenant", "default"),
            events=claims.pop("events", None),
        ),
        options={"verify_signature": False},
    )
    base.update(claims)
    return jwt.encode(base, api_secret, algorithm="HS256")


async def start_notifier(nursery: trio.Nursery, ctx: Context, **values: Any) -> Any:
    """The notifier actor in-process; returns the ``Notifier`` (tests watch its rounds)."""
    from codeqd.actors.notifier import Notifier

    settings: dict[str, Any] = {
        "interval": cfgmod.Duration(5),
        "timeout": cfgmod.Duration(2),
        "dedup_window": cfgmod.Duration(0),
    }
    settings.update(
        {k: cfgmod.Duration(v) if isinstance(v, float) else v for k, v in values.items()}
    )
    notifier = Notifier(ctx, Live(cfgmod.NotifierConfig(**settings)))
    await nursery.start(notifier.run)
    return notifier


class Supervised:
    """The real supervisor in-process (real actors: ingress, dispatcher, notifier, ...)
    on the test's store, and an ``Api`` bound to its ingress."""

    def __init__(self, sup: Any, api: Any) -> None:
        self.sup = sup
        self.api = api

    @property
    def restarts(self) -> dict[str, int]:
        return dict(self.sup.restarts)


def supervised_config(tmp_path: Path, redis_url: str) -> cfgmod.Config:
    return make_config(
        tmp_path,
        store={"mode": "external", "url": redis_url},
        webhooks={"hmac_secret": SECRET, "deny_private_networks": False},
        actors={
            "ingress": {"bind": "127.0.0.1:0"},
            "dispatcher": {
                "interval": 0.2,
                "timeout": 2,
                "max_attempts": 3,
                "base_backoff": 0.02,
                "max_backoff": 0.05,
            },
            "notifier": {"dedup_window": 0, "timeout": 2},
        },
        # One crash would be one restart too many: the test reads ``restarts``.
        supervisor={"max_restarts": 1, "backoff_base": 0.001, "backoff_max": 0.01},
    )


@asynccontextmanager
async def run_supervised(config: cfgmod.Config) -> AsyncIterator[Supervised]:
    import httpx

    from codeqd.supervisor import EXIT_OK, Supervisor
    from tests.integration.conftest import Api

    sup = Supervisor(config)
    codes: list[int] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            codes.append(await sup.run())

        nursery.start_soon(run)
        with trio.fail_after(20):
            await sup.ready.wait()
        assert sup.ctx is not None
        async with httpx.AsyncClient(timeout=30) as client:
            yield Supervised(sup, Api(sup.ctx, sup.addresses[0], client))
        sup.stop()
    assert codes == [EXIT_OK]


@pytest.fixture
async def supervised(tmp_path: Path, redis_url: str) -> AsyncIterator[Supervised]:
    async with run_supervised(supervised_config(tmp_path, redis_url)) as s:
        yield s


async def subscribe_as(api: Any, url: str, token: str | None = None, **body: Any) -> str:
    """Create a subscription (minIntervalSeconds 0 unless given); its id."""
    r = await api.call(
        "POST",
        "/workers/subscriptions",
        token or api.worker,
        {"callbackUrl": url, "minIntervalSeconds": 0, **body},
    )
    assert r.status_code == 200, r.text
    return r.json()["subscriptionId"]  # type: ignore[no-any-return]
