"""The same client from asyncio (in a thread of its own) and from plain blocking code;
the worker runner and the shell worker on asyncio too (they are written on anyio)."""

from __future__ import annotations

import asyncio
import time

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
from codeqd_client import worker
from codeqd_client._worker_cli import ShellHandler
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


async def _asyncio_worker(
    base: str, producer_token: str, worker_token: str, command: str
) -> tuple[TaskResult, TaskResult, TaskResult, float]:
    async def on_asyncio(task: Task) -> dict[str, object]:
        await asyncio.sleep(0)
        return {"n": task.payload["n"], "loop": type(asyncio.get_running_loop()).__name__}

    handlers: dict[str, worker.Handler] = {
        f"{command}-py": on_asyncio,
        f"{command}-sh": ShellHandler(["sh", "-c", "cat"]),
        f"{command}-slow": ShellHandler(["sh", "-c", "sleep 30"], timeout=0.3),
    }
    shutdown = asyncio.Event()
    async with AsyncProducer(base, producer_token) as p:
        running = asyncio.create_task(
            worker.run(
                handlers,
                url=base,
                token=worker_token,
                concurrency=3,
                wait_seconds=1,
                handle_signals=False,
                shutdown=shutdown,
            )
        )
        py = await p.create(f"{command}-py", {"n": 7})
        sh = await p.create(f"{command}-sh", {"echo": [1, 2]})
        slow = await p.create(f"{command}-slow", {}, max_attempts=1)
        started = time.monotonic()
        outcomes = [await p.result(t.id, wait=20) for t in (py, sh, slow)]
        slow_seconds = time.monotonic() - started
        shutdown.set()
        await asyncio.wait_for(running, 20)
    return outcomes[0], outcomes[1], outcomes[2], slow_seconds


async def test_worker_runner_and_shell_worker_on_asyncio(
    shared_daemon: Daemon, command: str
) -> None:
    py, sh, slow, slow_seconds = await trio.to_thread.run_sync(
        asyncio.run,
        _asyncio_worker(
            shared_daemon.base,
            shared_daemon.token("producer"),
            shared_daemon.token("worker", sub="asyncio-runner"),
            command,
        ),
    )
    assert py.result is not None and py.result.result == {"n": 7, "loop": "_UnixSelectorEventLoop"}
    assert sh.result is not None and sh.result.result == {"echo": [1, 2]}
    # Its one attempt timed out: the command (sleep 30) was killed, not waited for.
    assert slow.task.status == "FAILED" and slow.task.attempts == 1, slow
    assert slow_seconds < 10
