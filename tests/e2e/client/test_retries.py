"""Retries against a daemon whose store stops answering (SIGSTOP), then answers again."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio

from codeqd.client import AsyncProducer, RetryPolicy, ServiceUnavailable, Task
from tests.conftest import Daemon


@pytest.fixture
def frozen_store(daemon_factory: Any) -> Iterator[tuple[Daemon, int]]:
    d: Daemon = daemon_factory({"store": {"command_timeout": "300ms"}})
    pid = int((d.state_dir / "store" / "redis.pid").read_text())
    yield d, pid
    os.kill(pid, signal.SIGCONT)


async def test_503_is_retried_for_safe_calls_only(frozen_store: tuple[Daemon, int]) -> None:
    daemon, store_pid = frozen_store
    answers: list[int] = []
    outage_met = trio.Event()

    async def record(response: httpx.Response) -> None:
        answers.append(response.status_code)
        if answers.count(503) >= 2:
            outage_met.set()

    patient = RetryPolicy(attempts=50, base=0.05, cap=0.2)
    async with (
        httpx.AsyncClient(event_hooks={"response": [record]}) as http,
        AsyncProducer(daemon.base, daemon.token("producer"), http=http, retry=patient) as producer,
    ):
        task = await producer.create("r", {}, idempotency_key="k1")
        os.kill(store_pid, signal.SIGSTOP)

        # Without an idempotency key a 503 is final: the create may have happened.
        answers.clear()
        with pytest.raises(ServiceUnavailable) as caught:
            await producer.create("r", {})
        assert caught.value.status == 503 and answers == [503]

        # A read, and a keyed create, wait the outage out.
        answers.clear()
        outage_met = trio.Event()  # the hook sees the new one (a closure variable)
        got: list[Task] = []

        async def read() -> None:
            got.append(await producer.get(task.id))

        async def create_again() -> None:
            got.append(await producer.create("r", {}, idempotency_key="k1"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            nursery.start_soon(create_again)
            with trio.fail_after(10):
                await outage_met.wait()
            os.kill(store_pid, signal.SIGCONT)
    assert answers.count(503) >= 2  # each call met the outage at least once
    assert sorted(a for a in answers if a != 503) == [200, 202]
    assert [t.id for t in got] == [task.id, task.id]
