"""The worker runner's transports: the worker stream by default, HTTP long-polling with
``transport="http"`` or when the daemon serves no stream (as the Go codeQ)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from codeqd import worker
from codeqd.client import AsyncProducer, Task
from codeqd_client import BadRequest
from tests.conftest import Daemon
from tests.e2e.client.conftest import FAST


@pytest.fixture(scope="module")
def streamless_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("codeqd-nostream"), {**FAST, "streams": {"enabled": False}})
    d.start()
    yield d
    d.close()


async def _drain(daemon: Daemon, command: str, n: int, **kw: Any) -> worker.Runner:
    """Run a runner until it completed ``n`` tasks of ``command``; return it."""
    seen: list[str] = []
    done = trio.Event()

    async def handle(task: Task) -> dict[str, Any]:
        seen.append(task.id)
        if len(seen) == n:
            done.set()
        return {"n": task.payload["n"]}

    async with AsyncProducer(daemon.base, daemon.token("producer")) as producer:
        ids = [(await producer.create(command, {"n": i})).id for i in range(n)]
        async with trio.open_nursery() as nursery:
            runner: worker.Runner = await nursery.start(
                functools.partial(
                    worker.run,
                    {command: handle},
                    url=daemon.base,
                    token=daemon.token("worker", sub="transports"),
                    handle_signals=False,
                    concurrency=3,
                    **kw,
                )
            )
            with trio.fail_after(20):
                await done.wait()
                for task_id in ids:
                    outcome = await producer.result(task_id, wait=10)
                    assert outcome.task.status == "COMPLETED"
            runner.stop()
    assert sorted(seen) == sorted(ids)
    assert runner.stats["complete"] == n and runner.stats["lost"] == 0
    return runner


async def test_the_stream_is_the_default(shared_daemon: Daemon, command: str) -> None:
    runner = await _drain(shared_daemon, command, 10)
    assert runner.using == "stream"


async def test_http_transport_long_polls(shared_daemon: Daemon, command: str) -> None:
    runner = await _drain(shared_daemon, command, 5, transport="http")
    assert runner.using == "http"


async def test_falls_back_to_http_without_a_stream(streamless_daemon: Daemon, command: str) -> None:
    runner = await _drain(streamless_daemon, command, 5)
    assert runner.using == "http"


async def test_stream_transport_insists(streamless_daemon: Daemon, command: str) -> None:
    with pytest.raises(BadRequest, match="no worker stream"):
        with trio.fail_after(10):
            await worker.run(
                {command: lambda task: None},
                url=streamless_daemon.base,
                token=streamless_daemon.token("worker"),
                handle_signals=False,
                transport="stream",
            )
