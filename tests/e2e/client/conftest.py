"""One real daemon shared by the client tests (each test uses its own command names)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import trio

from codeqd.client import AsyncProducer, AsyncWorkerClient, RetryPolicy
from tests.conftest import Daemon

#: Commands whose retries wait a minute: a nacked task stays PENDING with its reason.
SLOW_RETRY = ("shfail", "shslow")

FAST = {
    "actors": {"reaper": {"interval": "100ms"}, "promoter": {"interval": "100ms"}},
    "backoff": {
        "policy": "fixed",
        "base": 0,
        "max": 0,
        "commands": {c: {"policy": "fixed", "base": 60, "max": 60} for c in SLOW_RETRY},
    },
}


@pytest.fixture(scope="package")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("codeqd-client"), FAST)
    d.start()
    yield d
    d.close()


@pytest.fixture
def command() -> str:
    """A command name no other test uses."""
    return f"c{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def producer(shared_daemon: Daemon) -> Any:
    async with AsyncProducer(shared_daemon.base, shared_daemon.token("producer")) as p:
        yield p


@pytest.fixture
async def worker_client(shared_daemon: Daemon) -> Any:
    async with AsyncWorkerClient(
        shared_daemon.base, shared_daemon.token("worker", sub="worker-a")
    ) as w:
        yield w


async def admin(daemon: Daemon, method: str, path: str) -> Any:
    """An admin call (pause/resume...): not part of the client library."""
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.request(
            method,
            f"{daemon.base}/v1/codeq/admin{path}",
            headers={"Authorization": f"Bearer {daemon.token('admin')}"},
        )
        assert r.status_code == 200, r.text
        return r.json()


FAST_RETRY = RetryPolicy(attempts=2, base=0.01, cap=0.05)


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float = 10, what: str = "condition"
) -> None:
    """Poll ``check`` until true (state changes in another process have no event to await)."""
    with trio.fail_after(timeout):
        while not await check():
            await trio.sleep(0.05)
