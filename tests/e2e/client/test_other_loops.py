"""The same client from asyncio (in a thread of its own) and from plain blocking code."""

from __future__ import annotations

import asyncio

import pytest
import trio

from codeqd.client import (
    AsyncProducer,
    AsyncWorkerClient,
    LeaseLost,
    NewTask,
    Producer,
    RetryPolicy,
    Task,
    TaskResult,
    Unreachable,
    WorkerClient,
)
from tests.conftest import Daemon, free_port


async def _asyncio_round_trip(
    base: str, producer_token: str, worker_token: str, command: str
) -> tuple[TaskResult, bool, bool]:
    async with AsyncProducer(base, producer_token) as p, AsyncWorkerClient(base, worker_token) as w:
        created = await p.create(command, {"loop": "asyncio"})
        waiter = asyncio.create_task(p.result(created.id, wait=20))
        claimed = await w.claim([command], lease_seconds=30, wait=5)
        assert claimed is not None
        await w.heartbeat(claimed, extend_seconds=30)
        await w.complete(claimed, {"seen": claimed.payload["loop"]})
        outcome = await asyncio.wait_for(waiter, 10)
        # asyncio cancellation of a long-poll claim ends it at once.
        try:
            await asyncio.wait_for(w.claim([command], wait=25), 0.3)
            poll_cancelled = False
        except TimeoutError:
            poll_cancelled = True
        # Retry back-off sleeps through anyio, i.e. on asyncio here.
        gone = AsyncProducer(
            f"http://127.0.0.1:{free_port()}",
            producer_token,
            retry=RetryPolicy(attempts=3, base=0.01, cap=0.02),
        )
        try:
            await gone.get("x")
            unreachable = False
        except Unreachable:
            unreachable = True
        finally:
            await gone.aclose()
        return outcome, poll_cancelled, unreachable


async def test_round_trip_from_asyncio(shared_daemon: Daemon, command: str) -> None:
    outcome, poll_cancelled, unreachable = await trio.to_thread.run_sync(
        asyncio.run,
        _asyncio_round_trip(
            shared_daemon.base,
            shared_daemon.token("producer"),
            shared_daemon.token("worker", sub="asyncio-worker"),
            command,
        ),
    )
    assert outcome.done and outcome.result is not None
    assert outcome.result.result == {"seen": "asyncio"}
    assert poll_cancelled and unreachable


def test_round_trip_blocking(shared_daemon: Daemon, command: str) -> None:
    with (
        Producer(shared_daemon.base, shared_daemon.token("producer")) as p,
        WorkerClient(shared_daemon.base, shared_daemon.token("worker", sub="sync")) as w,
    ):
        items = p.create_many([NewTask(command=command, payload={"i": i}) for i in range(3)])
        assert all(isinstance(i, Task) for i in items)
        claimed = w.claim_many(3, [command], lease_seconds=30, wait=5)
        assert sorted(t.payload["i"] for t in claimed) == [0, 1, 2]
        first, second, third = claimed
        assert w.heartbeat(first) is not None
        w.complete(first, {"ok": 1})
        w.nack(second, "later", delay_seconds=0)
        w.abandon(third.id)  # by id: the remembered leaseId goes along
        with pytest.raises(LeaseLost):
            w.complete(third, {})
        again = w.claim_many(2, [command], wait=5)
        assert {t.id for t in again} == {second.id, third.id}
        for t in again:
            w.complete(t, {"ok": 2})
        outcomes = [p.result(t.id, wait=5) for t in claimed]
        assert [o.task.status for o in outcomes] == ["COMPLETED"] * 3
        assert p.get(second.id).attempts == 2
        pending = p.create(command, {})
        assert p.cancel(pending.id).status == "CANCELLED"
