"""Worker streams against the real daemon: two ingress processes over two shards,
SIGTERM draining the streams, and a kill -9 with streams open losing nothing."""

from __future__ import annotations

import functools
import signal
from typing import Any

import httpx
import orjson
import pytest
import trio

from codeqd import worker
from codeqd.client import AsyncProducer, Task
from codeqd_client._ws import Closed, WebSocket
from tests.conftest import Daemon, RedisServer

pytestmark = pytest.mark.trio


def _shared(redis_server: RedisServer) -> dict[str, Any]:
    return {
        "store": {"mode": "external", "url": redis_server.url, "shards": 2},
        "actors": {
            "ingress": {"processes": 2},
            "reaper": {"interval": "100ms"},
            "promoter": {"interval": "100ms"},
        },
        "backoff": {"policy": "fixed", "base": 0, "max": 0},
    }


async def _open(daemon: Daemon, sub: str) -> WebSocket:
    token = daemon.token("worker", sub=sub)
    return await WebSocket.connect(
        f"{daemon.base}/v1/codeq/workers/stream", {"Authorization": f"Bearer {token}"}
    )


async def _next(ws: WebSocket, kind: str) -> dict[str, Any]:
    with trio.fail_after(15):
        while True:
            msg: dict[str, Any] = orjson.loads(await ws.receive())
            if msg["type"] == kind:
                return msg


async def _task_status(daemon: Daemon, task_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(
            f"{daemon.base}/v1/codeq/tasks/{task_id}",
            headers={"Authorization": f"Bearer {daemon.token('producer')}"},
        )
        return r.json()  # type: ignore[no-any-return]


async def test_sigterm_drains_streams_across_processes_and_shards(
    daemon_factory: Any, redis_server: RedisServer
) -> None:
    redis_server.flush()
    config = _shared(redis_server)
    daemon: Daemon = daemon_factory(config)
    streams = [await _open(daemon, f"w{i}") for i in range(4)]
    for ws in streams:
        await ws.send('{"type":"ready","maxInFlight":1,"ref":"r"}')
        await _next(ws, "ack")
    async with AsyncProducer(daemon.base, daemon.token("producer")) as producer:
        ids = {(await producer.create("drain", {"i": i})).id for i in range(4)}
    # Every stream (on either process) is woken for a task created on either shard.
    pushed = {(await _next(ws, "task"))["task"]["id"] for ws in streams}
    assert pushed == ids
    daemon.signal(signal.SIGTERM)
    for ws in streams:
        with trio.fail_after(15):
            with pytest.raises(Closed) as info:
                while True:
                    await ws.receive()
        assert info.value.code == 1001
    assert daemon.proc is not None
    assert daemon.proc.wait(30) == 0, daemon.log()[-3000:]
    daemon.proc = None
    again: Daemon = daemon_factory(config)
    for task_id in ids:
        task = await _task_status(again, task_id)
        assert task["status"] == "PENDING" and task["attempts"] == 1, task


async def test_kill_9_with_streams_open_loses_nothing(
    daemon_factory: Any, redis_server: RedisServer
) -> None:
    """Stream workers drain a backlog while the daemon is killed (-9) and restarted:
    every task completes; the ones held at the kill come back when their leases end."""
    redis_server.flush()
    config = _shared(redis_server)
    daemon: Daemon = daemon_factory(config)
    n = 60
    done: dict[str, int] = {}
    halfway = trio.Event()

    async def handle(task: Task) -> dict[str, Any]:
        done[task.id] = done.get(task.id, 0) + 1
        if len(done) >= n // 2:
            halfway.set()
        await trio.sleep(0.01)  # a little work, so tasks are in flight at the kill
        return {"i": task.payload["i"]}

    async with AsyncProducer(daemon.base, daemon.token("producer")) as producer:
        ids = [(await producer.create("acct", {"i": i})).id for i in range(n)]
        async with trio.open_nursery() as nursery:
            runners = [
                await nursery.start(
                    functools.partial(
                        worker.run,
                        {"acct": handle},
                        url=daemon.base,
                        token=daemon.token("worker", sub=f"acct-{i}"),
                        handle_signals=False,
                        concurrency=4,
                        lease_seconds=2,
                        transport="stream",
                    )
                )
                for i in range(2)
            ]
            with trio.fail_after(30):
                await halfway.wait()
            daemon.stop(kill=True)
            daemon.start()
            with trio.fail_after(60):
                for task_id in ids:
                    outcome = await producer.result(task_id, wait=30)
                    while outcome.task.status != "COMPLETED":
                        outcome = await producer.result(task_id, wait=30)
            for r in runners:
                r.stop()
    assert set(done) == set(ids)
    assert all(r.using == "stream" for r in runners)
