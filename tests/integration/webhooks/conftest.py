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


async def start_dispatcher(nursery: trio.Nursery, ctx: Context, **values: Any
                           ) -> Live[cfgmod.DispatcherConfig]:
    from codeqd.actors import dispatcher

    settings = {"interval": cfgmod.Duration(0.5), "timeout": cfgmod.Duration(2),
                "base_backoff": cfgmod.Duration(0.05), "max_backoff": cfgmod.Duration(0.2)}
    settings.update({k: cfgmod.Duration(v) if isinstance(v, float) else v
                     for k, v in values.items()})
    live = Live(cfgmod.DispatcherConfig(**settings))
    await nursery.start(dispatcher.run, ctx, live)
    return live
