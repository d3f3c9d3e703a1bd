"""Webhook test fixtures: the API with a known HMAC secret, and actors run in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from codeqd import config as cfgmod
from codeqd.actors import Live
from codeqd.context import Context
from tests.integration.conftest import make_config

SECRET = "test-hmac-secret"


@pytest.fixture
def config(tmp_path: Path) -> cfgmod.Config:
    return make_config(tmp_path, webhooks={"hmac_secret": SECRET})


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
