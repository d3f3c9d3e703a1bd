"""AsyncProducer / AsyncWorkerClient from trio against a real daemon."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from codeqd.client import (
    AsyncProducer,
    AsyncWorkerClient,
    BadRequest,
    Conflict,
    Forbidden,
    LeaseLost,
    NewTask,
    NotFound,
    RetryPolicy,
    Task,
    Unauthorized,
    Unreachable,
)
from tests.conftest import Daemon, free_port


async def test_round_trip(
    producer: AsyncProducer, worker_client: AsyncWorkerClient, command: str
) -> None:
    created = await producer.create(command, {"to": "a@example.com"}, priority=3, max_attempts=4)
    assert created.status == "PENDING" and created.payload == {"to": "a@example.com"}
    assert created.priority == 3 and created.max_attempts == 4 and created.created_at

    claimed = await worker_client.claim([command], lease_seconds=30, wait=5)
    assert claimed is not None and claimed.id == created.id
    assert claimed.status == "IN_PROGRESS" and claimed.attempts == 1 and claimed.lease_id
    until = await worker_client.heartbeat(claimed, extend_seconds=60)
    assert until is not None and claimed.lease_until is not None and until > claimed.lease_until

    result = await worker_client.complete(claimed, {"sent": True})
    assert result.ok and result.task_id == created.id and result.result == {"sent": True}

    outcome = await producer.result(created.id)
    assert outcome.done and outcome.task.status == "COMPLETED"
    assert outcome.result is not None and outcome.result.result == {"sent": True}
    assert (await producer.get(created.id)).status == "COMPLETED"


async def test_result_wait_returns_when_the_task_completes(
    producer: AsyncProducer, worker_client: AsyncWorkerClient, command: str
) -> None:
    task = await producer.create(command, {})
    early = await producer.result(task.id)
    assert not early.done and early.result is None
    answers: list[Any] = []

    async def wait_for_result() -> None:
        answers.append(await producer.result(task.id, wait=25))

    with trio.fail_after(10):  # far below the 25 s wait: only the completion ends it
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_result)
            claimed = await worker_client.claim([command], wait=5)
            assert claimed is not None
            await worker_client.complete(claimed, {"n": 1})
    assert answers[0].done and answers[0].result.result == {"n": 1}


async def test_result_wait_that_ends_first_reads_the_task(
    producer: AsyncProducer, command: str
) -> None:
    # The daemon answers 404 result_not_found while there is none; result() keeps
    # waiting on it and, when its wait is over, reads the task as it is.
    task = await producer.create(command, ["any", "json"])
    started = trio.current_time()
    with trio.fail_after(10):
        outcome = await producer.result(task.id, wait=2)
    assert trio.current_time() - started >= 1.5
    assert not outcome.done and outcome.result is None
    assert outcome.task.id == task.id and outcome.task.payload == ["any", "json"]
    with pytest.raises(NotFound):
        await producer.result("01a207b1-88ed-78c7-89ec-9d85f8c0b900")


async def test_another_workers_task_is_lease_lost(
    shared_daemon: Daemon, producer: AsyncProducer, worker_client: AsyncWorkerClient, command: str
) -> None:
    task = await producer.create(command, {})
    claimed = await worker_client.claim([command], wait=5)
    assert claimed is not None and claimed.id == task.id
    async with AsyncWorkerClient(
        shared_daemon.base, shared_daemon.token("worker", sub="worker-b")
    ) as other:
        with pytest.raises(LeaseLost) as caught:
            await other.complete(task.id, {})
    assert (caught.value.status, caught.value.code) == (403, "not_lease_holder")
    assert (await worker_client.complete(claimed, {})).ok


async def test_create_many_reports_items_in_order(
    producer: AsyncProducer, worker_client: AsyncWorkerClient, command: str
) -> None:
    items = await producer.create_many(
        [
            NewTask(command=command, payload={"i": 0}),
            {"command": command, "payload": {"i": 1}, "priority": 5},
            {"command": "not a command!", "payload": {}},
            NewTask(command=command, payload={"i": 3}, idempotency_key=f"{command}-3"),
        ],
        batch_size=3,
    )
    assert [type(i) for i in items] == [Task, Task, BadRequest, Task]
    bad = items[2]
    assert isinstance(bad, BadRequest) and bad.status in (400, None)

    claimed = await worker_client.claim_many(2, [command], wait=5)
    assert [t.payload["i"] for t in claimed] == [1, 0]  # priority first, then FIFO
    rest = await worker_client.claim_many(5, [command], wait=1)
    assert [t.payload["i"] for t in rest] == [3]
    for t in [*claimed, *rest]:
        await worker_client.complete(t, {})
    assert await worker_client.claim_many(3, [command]) == []


async def test_idempotency_key_returns_the_first_task(
    producer: AsyncProducer, command: str
) -> None:
    first = await producer.create(command, {"v": 1}, idempotency_key=f"{command}-k")
    again = await producer.create(command, {"v": 2}, idempotency_key=f"{command}-k")
    assert again.id == first.id and again.payload == {"v": 1}


async def test_lease_id_fences_a_stale_holder(
    worker_client: AsyncWorkerClient, producer: AsyncProducer, command: str
) -> None:
    task = await producer.create(command, {})
    first = await worker_client.claim([command], wait=5)
    assert first is not None
    await worker_client.abandon(first)
    second = await worker_client.claim([command], wait=5)
    assert second is not None and second.id == task.id and second.lease_id != first.lease_id
    # Same worker sub: only the leaseId tells the stale claim from the current one.
    with pytest.raises(LeaseLost) as caught:
        await worker_client.complete(first, {"stale": True})
    assert caught.value.status == 409 and caught.value.code == "lease_lost"
    with pytest.raises(LeaseLost):
        await worker_client.heartbeat(first)
    # By id, the client sends the lease it remembers from the last claim.
    assert (await worker_client.complete(task.id, {"fresh": True})).ok
    assert (await producer.result(task.id)).result.result == {"fresh": True}  # type: ignore[union-attr]


async def test_nack_requeues_then_dead_letters(
    producer: AsyncProducer, worker_client: AsyncWorkerClient, command: str
) -> None:
    task = await producer.create(command, {}, max_attempts=2)
    claimed = await worker_client.claim([command], wait=5)
    assert claimed is not None
    outcome = await worker_client.nack(claimed, "try later")
    assert outcome.status == "requeued" and not outcome.dead_lettered
    claimed = await worker_client.claim([command], wait=5)
    assert claimed is not None and claimed.attempts == 2
    assert (await worker_client.nack(claimed, "again")).dead_lettered
    done = await producer.result(task.id)
    assert done.task.status == "FAILED" and done.task.error == "MAX_ATTEMPTS"


async def test_fail_is_terminal_and_cancel(
    producer: AsyncProducer, worker_client: AsyncWorkerClient, command: str
) -> None:
    failing = await producer.create(command, {})
    claimed = await worker_client.claim([command], wait=5)
    assert claimed is not None
    result = await worker_client.fail(claimed, "bad input", result={"line": 3})
    assert result.status == "FAILED" and result.error == "bad input"
    with pytest.raises(Conflict) as caught:
        await producer.cancel(failing.id)
    assert caught.value.status == 409

    pending = await producer.create(command, {})
    cancelled = await producer.cancel(pending.id)
    assert cancelled.status == "CANCELLED" and cancelled.done
    assert await worker_client.claim([command]) is None


async def test_a_cancelled_task_is_lost_to_its_holder(
    producer: AsyncProducer, worker_client: AsyncWorkerClient, command: str
) -> None:
    task = await producer.create(command, {})
    claimed = await worker_client.claim([command], wait=5)
    assert claimed is not None
    await producer.cancel(task.id)
    with pytest.raises(LeaseLost) as caught:
        await worker_client.complete(claimed, {})
    assert caught.value.code == "invalid_state"


async def test_errors_are_typed(
    shared_daemon: Daemon, producer: AsyncProducer, command: str
) -> None:
    with pytest.raises(NotFound) as nf:
        await producer.get("0123456789abcdef0123456789abcdef")
    assert nf.value.status == 404 and nf.value.request_id
    with pytest.raises(BadRequest) as bad:
        await producer.create("has spaces", {})
    assert bad.value.code == "validation_error" and "command" in bad.value.message

    async with AsyncProducer(shared_daemon.base, "not-a-token") as p:
        with pytest.raises(Unauthorized):
            await p.get("x")
    narrow = shared_daemon.token("worker", sub="narrow", events=["only-this"])
    async with AsyncWorkerClient(shared_daemon.base, narrow) as w:
        with pytest.raises(Forbidden) as forbidden:
            await w.claim([command])
    assert forbidden.value.status == 403


async def test_unreachable_after_retries() -> None:
    policy = RetryPolicy(attempts=3, base=0.01, cap=0.02)
    async with AsyncProducer(f"http://127.0.0.1:{free_port()}", "t", retry=policy) as p:
        with pytest.raises(Unreachable) as caught:
            await p.get("x")
    assert caught.value.status is None and caught.value.__cause__ is not None
