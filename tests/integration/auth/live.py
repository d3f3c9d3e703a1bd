"""The real daemon's HTTP app served from a background thread (its own trio run), for
synchronous property-based tests (hypothesis, schemathesis) that drive it over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from codeqd import config as cfgmod
from codeqd.auth import Authenticator, load_or_create_dev_secret, mint_dev_token
from codeqd.context import Context
from codeqd.http import serve
from codeqd.store import WakeHub, connect
from tests.conftest import RedisServer
from tests.integration.conftest import make_config


class LiveServer:
    def __init__(self, config: cfgmod.Config, redis_url: str) -> None:
        self.config = config
        self.redis_url = redis_url
        self.base = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._ctx: Context | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread = threading.Thread(target=self._run, name="codeqd-live", daemon=True)
        secret = load_or_create_dev_secret(config)
        self.tokens: dict[str, str] = {
            "producer": mint_dev_token(secret, "producer", sub="fuzz-p"),
            "worker": mint_dev_token(secret, "worker", sub="fuzz-w"),
            "admin": mint_dev_token(secret, "admin", sub="fuzz-a"),
            "root": mint_dev_token(secret, "admin", sub="fuzz-root", tenant="*"),
        }

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # reported to the test thread by start()
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        async with connect(self.config, self.redis_url) as store:
            await store.init_keyspace()
            self._ctx = Context(
                config=self.config, store=store, hub=WakeHub(), auth=Authenticator(self.config)
            )
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                binds: Any = await nursery.start(serve, self._ctx)
                self.base = binds[0]
                self._ready.set()

    def start(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"live server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._token is not None and self._ctx is not None:
            self._token.run_sync_soon(self._ctx.shutting_down.set)
        self._thread.join(30)


@pytest.fixture(scope="module", name="live")
def live_fixture(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One daemon app per test module, on a flushed store, with a 64 KiB body limit."""
    redis_server.flush()
    config = make_config(tmp_path_factory.mktemp("live"), limits={"body_bytes": 64 * 1024})
    server = LiveServer(config, redis_server.url).start()
    yield server
    server.stop()
