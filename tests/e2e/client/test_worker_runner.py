"""codeqd.worker.run against a real daemon: heartbeats, retries, concurrency, stopping."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio

from codeqd import worker
from codeqd.client import AsyncProducer, AsyncWorkerClient, Task
from tests.conftest import REPO, Daemon
from tests.e2e.client.conftest import admin, wait_until

HERE = Path(__file__).parent


def _runner(daemon: Daemon, handlers: dict[str, worker.Handler], **kw: Any) -> Any:
    return functools.partial(
        worker.run,
        handlers,
        url=daemon.base,
        token=daemon.token("worker", sub=kw.pop("sub", "runner")),
        handle_signals=False,
        **kw,
    )


async def test_heartbeats_keep_a_long_task_alive(
    shared_daemon: Daemon, producer: AsyncProducer, command: str
) -> None:
    started, release = trio.Event(), trio.Event()

    async def hold(task: Task) -> dict[str, Any]:
        started.set()
        await release.wait()
        return {"held": True}

    task = await producer.create(command, {})
    async with trio.open_nursery() as nursery:
        runner = await nursery.start(_runner(shared_daemon, {command: hold}, lease_seconds=2))
        with trio.fail_after(10):
            await started.wait()
        first_lease = (await producer.get(task.id)).lease_until
        assert first_lease is not None

        async def outlived_first_lease() -> bool:
            # Well past the first lease's end; the reaper runs every 100 ms.
            return datetime.now(UTC) > first_lease + timedelta(seconds=1.5)

        await wait_until(outlived_first_lease)
        held = await producer.get(task.id)
        assert held.status == "IN_PROGRESS" and held.attempts == 1
        assert held.lease_until is not None and held.lease_until > first_lease
        release.set()
        outcome = await producer.result(task.id, wait=10)
        runner.stop()
    assert outcome.task.status == "COMPLETED" and outcome.task.attempts == 1
    assert outcome.result is not None and outcome.result.result == {"held": True}
    assert runner.stats["complete"] == 1 and runner.stats["lost"] == 0


async def test_exception_nacks_with_its_message_then_the_retry_succeeds(
    shared_daemon: Daemon, producer: AsyncProducer, command: str
) -> None:
    attempts: list[int] = []

    async def flaky(task: Task) -> dict[str, Any]:
        attempts.append(task.attempts)
        if task.attempts == 1:
            # Hold the retry back until the test has seen the nack's reason.
            await admin(shared_daemon, "POST", f"/queues/{command}/pause")
            raise ValueError("disk full on /data")
        return {"attempt": task.attempts}

    task = await producer.create(command, {})
    async with trio.open_nursery() as nursery:
        runner = await nursery.start(_runner(shared_daemon, {command: flaky}))

        async def nacked() -> bool:
            t = await producer.get(task.id)
            return t.status == "PENDING" and t.error is not None

        await wait_until(nacked)
        assert (await producer.get(task.id)).error == "ValueError: disk full on /data"
        await admin(shared_daemon, "POST", f"/queues/{command}/resume")
        outcome = await producer.result(task.id, wait=10)
        runner.stop()
    assert attempts == [1, 2]
    assert outcome.task.status == "COMPLETED" and outcome.task.attempts == 2
    assert outcome.result is not None and outcome.result.result == {"attempt": 2}
    assert runner.stats["nack"] == 1 and runner.stats["complete"] == 1


async def test_handlers_run_concurrently_up_to_the_limit(
    shared_daemon: Daemon, producer: AsyncProducer, command: str
) -> None:
    running = 0
    peak = 0
    all_in = trio.Event()

    async def meet(task: Task) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 3:
            all_in.set()
        await all_in.wait()  # only returns once three run at the same time
        running -= 1

    tasks = await producer.create_many(
        [{"command": command, "payload": {"i": i}} for i in range(4)]
    )
    async with trio.open_nursery() as nursery:
        runner = await nursery.start(_runner(shared_daemon, {command: meet}, concurrency=3))
        for t in tasks:
            assert isinstance(t, Task)
            outcome = await producer.result(t.id, wait=10)
            assert outcome.task.status == "COMPLETED" and outcome.result is not None
            assert outcome.result.result == {}
        runner.stop()
    assert peak == 3


async def test_sync_handlers_run_in_threads(
    shared_daemon: Daemon, producer: AsyncProducer, command: str
) -> None:
    barrier = threading.Barrier(2, timeout=10)

    def work(task: Task) -> Any:
        barrier.wait()  # two threads at once, or BrokenBarrierError
        if task.payload["kind"] == "fail":
            raise worker.Fail("input is unusable")
        return task.payload["n"] * 2

    ok = await producer.create(command, {"kind": "ok", "n": 21})
    bad = await producer.create(command, {"kind": "fail"})
    async with trio.open_nursery() as nursery:
        runner = await nursery.start(_runner(shared_daemon, {command: work}, concurrency=2))
        done_ok = await producer.result(ok.id, wait=10)
        done_bad = await producer.result(bad.id, wait=10)
        runner.stop()
    assert done_ok.result is not None and done_ok.result.result == {"value": 42}
    assert done_bad.task.status == "FAILED" and done_bad.task.attempts == 1
    assert done_bad.result is not None and done_bad.result.error == "Fail: input is unusable"


async def test_a_lost_lease_cancels_the_handler(
    shared_daemon: Daemon, producer: AsyncProducer, command: str
) -> None:
    started, cancelled = trio.Event(), trio.Event()

    async def forever(task: Task) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    task = await producer.create(command, {})
    async with trio.open_nursery() as nursery:
        runner = await nursery.start(_runner(shared_daemon, {command: forever}, lease_seconds=3))
        with trio.fail_after(10):
            await started.wait()
        await producer.cancel(task.id)
        with trio.fail_after(10):  # the next heartbeat (every second) learns of it
            await cancelled.wait()
        runner.stop()
    assert runner.stats["lost"] == 1
    assert (await producer.get(task.id)).status == "CANCELLED"


async def test_stop_lets_handlers_finish_within_grace_then_abandons(
    shared_daemon: Daemon, producer: AsyncProducer, command: str
) -> None:
    started: dict[str, trio.Event] = {"quick": trio.Event(), "stuck": trio.Event()}
    finish_quick = trio.Event()

    async def handler(task: Task) -> dict[str, Any]:
        started[task.payload["kind"]].set()
        if task.payload["kind"] == "quick":
            await finish_quick.wait()
            return {"finished": "during the grace period"}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    quick = await producer.create(command, {"kind": "quick"})
    stuck = await producer.create(command, {"kind": "stuck"})
    shutdown = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            runner = await nursery.start(
                _runner(
                    shared_daemon,
                    {command: handler},
                    concurrency=2,
                    grace_seconds=1,
                    lease_seconds=60,
                    shutdown=shutdown,
                )
            )
            for event in started.values():
                await event.wait()
            shutdown.set()
            await trio.testing.wait_all_tasks_blocked()
            finish_quick.set()
    assert runner.stats == {"complete": 1, "nack": 0, "fail": 0, "abandon": 1, "lost": 0}
    assert (await producer.result(quick.id)).task.status == "COMPLETED"
    left = await producer.get(stuck.id)
    assert left.status == "PENDING" and left.attempts == 1  # back at once, lease not waited out


async def test_sigterm_abandons_the_task_for_another_worker(
    shared_daemon: Daemon, producer: AsyncProducer, worker_client: AsyncWorkerClient, command: str
) -> None:
    task = await producer.create(command, {"n": 1})
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CODEQD_URL": shared_daemon.base,
        "CODEQD_TOKEN": shared_daemon.token("worker", sub="doomed"),
    }
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(HERE / "sigterm_worker.py"), command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        seen = b""
        with trio.fail_after(20):
            while f"started {task.id}".encode() not in seen:
                chunk = await proc.stdout.receive_some()
                assert chunk, "the worker exited before starting the task"
                seen += chunk
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await proc.wait()
        assert code == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    left = await producer.get(task.id)
    # Requeued by the worker's abandon, not by expiry: its lease had most of a minute left.
    assert left.status == "PENDING" and left.attempts == 1 and left.error is None
    again = await worker_client.claim([command], wait=5)
    assert again is not None and again.id == task.id and again.attempts == 2
    await worker_client.complete(again, {"by": "the second worker"})
    assert (await producer.result(task.id)).task.status == "COMPLETED"
