"""Worker streams (SPEC §6) against the real app on hypercorn and a real redis-server:
auth close codes, maxInFlight, pushes on every way a task becomes claimable, fencing,
malformed messages, hand-back on close and on shutdown."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import orjson
import pytest
import trio
import trio.testing
from prometheus_client import REGISTRY

from codeqd import metrics
from codeqd_client._ws import Closed, HandshakeRefused, WebSocket
from tests.integration.conftest import Api, make_config, start_api

pytestmark = pytest.mark.trio

STEP = 10  # seconds any single expected message may take (a bound, never waited out)


def ws_url(api: Api) -> str:
    return f"{api.base}/v1/codeq/workers/stream"


class Stream:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.refs = 0

    async def send(self, msg: Any) -> None:
        await self.ws.send(msg if isinstance(msg, str) else orjson.dumps(msg).decode())

    async def recv(self, timeout: float = STEP) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                msg: dict[str, Any] = orjson.loads(await self.ws.receive())
                if msg["type"] == "ping":
                    await self.send({"type": "pong"})
                    continue
                return msg

    async def call(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send ``msg`` and return its answer; tasks pushed meanwhile go to ``self.pushed``."""
        self.refs += 1
        await self.send({**msg, "ref": self.refs})
        while True:
            answer = await self.recv()
            if answer["type"] == "task":
                self.pushed.append(answer["task"])
                continue
            assert answer["ref"] == self.refs, answer
            return answer

    pushed: list[dict[str, Any]]

    async def task(self) -> dict[str, Any]:
        if self.pushed:
            return self.pushed.pop(0)
        msg = await self.recv()
        assert msg["type"] == "task", msg
        return msg["task"]  # type: ignore[no-any-return]

    async def ready(self, n: int, **kw: Any) -> dict[str, Any]:
        answer = await self.call({"type": "ready", "maxInFlight": n, **kw})
        assert answer["type"] == "ack" and answer["status"] == 200, answer
        return answer


@asynccontextmanager
async def open_stream(api: Api, token: str | None = None) -> AsyncIterator[Stream]:
    ws = await WebSocket.connect(
        ws_url(api), {"Authorization": f"Bearer {token or api.worker}"}, timeout=STEP
    )
    s = Stream(ws)
    s.pushed = []
    try:
        yield s
    finally:
        await ws.close()


async def closed_with(ws: WebSocket) -> Closed:
    with trio.fail_after(STEP):
        while True:
            try:
                await ws.receive()
            except Closed as c:
                return c


async def status_of(api: Api, task_id: str) -> str:
    r = await api.call("GET", f"/tasks/{task_id}", api.producer)
    return str(r.json()["status"])


async def wait_status(api: Api, task_id: str, status: str) -> None:
    with trio.fail_after(STEP):
        while await status_of(api, task_id) != status:
            await trio.sleep(0.01)


# ------------------------------------------------------------------ auth


async def test_bad_token_closes_4401(api: Api) -> None:
    ws = await WebSocket.connect(ws_url(api), {"Authorization": "Bearer nope"})
    assert (await closed_with(ws)).code == 4401


async def test_hello_bad_token_closes_4401_and_good_hello_works(api: Api) -> None:
    ws = await WebSocket.connect(ws_url(api))
    await ws.send('{"type":"hello","token":"nope"}')
    assert (await closed_with(ws)).code == 4401
    ws = await WebSocket.connect(ws_url(api))
    s = Stream(ws)
    s.pushed = []
    await s.send({"type": "hello", "token": api.worker})
    await s.ready(1)
    created = await api.create("email")
    assert (await s.task())["id"] == created["id"]
    await ws.close()


async def test_missing_scope_closes_4403(api: Api) -> None:
    now = int(time.time())
    token = jwt.encode(
        {
            "sub": "w",
            "iat": now,
            "exp": now + 600,
            "iss": "codeqd-dev",
            "tenantId": "default",
            "aud": ["codeq-worker"],
            "eventTypes": ["*"],
            "scope": "codeq:result",
        },
        api.secret,
        algorithm="HS256",
    )
    ws = await WebSocket.connect(ws_url(api), {"Authorization": f"Bearer {token}"})
    assert (await closed_with(ws)).code == 4403


async def test_producer_token_closes_4401_or_4403(api: Api) -> None:
    ws = await WebSocket.connect(ws_url(api), {"Authorization": f"Bearer {api.producer}"})
    assert (await closed_with(ws)).code in (4401, 4403)


async def test_event_types_outside_token_refused_in_ready(api: Api) -> None:
    token = api.token("worker", sub="w-email", events=["email"])
    async with open_stream(api, token) as s:
        answer = await s.call({"type": "ready", "maxInFlight": 1, "commands": ["sms"]})
        assert answer["type"] == "error" and answer["status"] == 403, answer
        await s.ready(1, commands=["email"])


async def test_http_upgrade_on_plain_route_is_still_refused(api: Api) -> None:
    with pytest.raises(HandshakeRefused) as info:
        await WebSocket.connect(f"{api.base}/v1/codeq/tasks/claim")
    assert info.value.status == 400


# ------------------------------------------------------------------ flow


async def test_max_in_flight_exact_and_result_frees_a_slot(api: Api) -> None:
    ids = [(await api.create("email", {"n": i}))["id"] for i in range(5)]
    async with open_stream(api) as s:
        await s.ready(2)
        first = [await s.task(), await s.task()]
        assert [t["id"] for t in first] == ids[:2]
        # A round trip later the third is still not pushed: the store agrees.
        hb = await s.call(
            {"type": "heartbeat", "id": first[0]["id"], "leaseId": first[0]["leaseId"]}
        )
        assert hb["type"] == "ack" and hb["body"]["ok"] is True
        stats = (await api.call("GET", "/admin/queues/email", api.admin)).json()
        assert stats["inProgress"] == 2 and stats["ready"] == 3
        with trio.move_on_after(0.3):
            extra = await s.recv()
            pytest.fail(f"a third task was pushed: {extra}")
        done = await s.call(
            {
                "type": "result",
                "id": first[0]["id"],
                "leaseId": first[0]["leaseId"],
                "status": "COMPLETED",
                "result": {"ok": 1},
            }
        )
        assert done["type"] == "ack" and done["status"] == 200, done
        assert done["body"]["status"] == "COMPLETED"
        third = await s.task()
        assert third["id"] == ids[2]
        stats = (await api.call("GET", "/admin/queues/email", api.admin)).json()
        assert stats["inProgress"] == 2


async def test_an_idle_stream_with_a_free_slot_does_not_poll_the_store(api: Api) -> None:
    """Pushed when woken, never polled: a stream with a free slot and nothing to claim
    waits for a hint, and makes no claim while the worker talks to it."""
    created = await api.create("email")
    async with open_stream(api) as s:
        await s.ready(2, commands=["email"])  # a named queue: each look is a claim.lua call
        assert (await s.task())["id"] == created["id"]
        with trio.fail_after(STEP):  # its next look found nothing: it is parked (a busy
            await trio.testing.wait_all_tasks_blocked(0.05)  # pusher never lets this return)
        before = script_calls("claim")
        for _ in range(20):  # round trips through the reader and the writer
            await s.send({"type": "ping"})
            with trio.fail_after(STEP):
                assert orjson.loads(await s.ws.receive()) == {"type": "pong"}
        assert script_calls("claim") == before


async def test_a_lease_that_ends_unreported_frees_its_slot(api: Api) -> None:
    """A pushed task the worker never reports (its report failed, its handler hung):
    once its lease ends it is not this stream's any more, and its slot takes the next
    task. A heartbeat moves that end."""
    first_created = await api.create("email")
    async with open_stream(api) as s:
        await s.ready(1, leaseSeconds=1)
        first = await s.task()
        assert first["id"] == first_created["id"]
        hb = await s.call(
            {
                "type": "heartbeat",
                "id": first["id"],
                "leaseId": first["leaseId"],
                "extendSeconds": 3,
            }
        )
        assert hb["type"] == "ack", hb
        second_created = await api.create("email")
        with trio.move_on_after(1.5):  # past the pushed lease, within the heartbeat's
            extra = await s.recv()
            pytest.fail(f"pushed while the heartbeat's lease runs: {extra}")
        second = await s.task()  # the first's lease ended unreported: its slot is free
        assert second["id"] == second_created["id"], second


async def test_pushed_on_create_promotion_nack_expiry_and_replay(api: Api) -> None:
    store = api.ctx.store
    async with open_stream(api) as s:
        await s.ready(1, leaseSeconds=30)
        # create
        created = await api.create("email")
        task = await s.task()
        assert task["id"] == created["id"] and task["leaseId"]
        # nack requeue (no delay) pushes it again, with a new lease
        ack = await s.call(
            {"type": "nack", "id": task["id"], "leaseId": task["leaseId"], "delaySeconds": 0}
        )
        assert ack["type"] == "ack" and ack["body"]["status"] == "requeued", ack
        again = await s.task()
        assert again["id"] == task["id"] and again["leaseId"] != task["leaseId"]
        # lease expiry: the reaper step requeues it, and it is pushed to a free slot (the
        # stream still counts the expired one until the worker hears of it: 409 below)
        await s.ready(2, leaseSeconds=30)
        assert await store.reap_expired(now=int(time.time() * 1000) + 3_600_000) == 1
        # (an expiry retries with backoff: the task is due once the backoff is over)
        assert await store.promote_due(now=int(time.time() * 1000) + 7_200_000) == 1
        third = await s.task()
        assert third["id"] == task["id"] and third["attempts"] == 3
        stale = await s.call({"type": "heartbeat", "id": again["id"], "leaseId": again["leaseId"]})
        assert stale["status"] == 409 and stale["code"] == "lease_lost", stale
        done = await s.call(
            {
                "type": "result",
                "id": third["id"],
                "leaseId": third["leaseId"],
                "status": "FAILED",
                "error": "x",
            }
        )
        assert done["type"] == "ack", done
        await s.ready(1, leaseSeconds=30)
        # promotion of a delayed task
        delayed = await api.create("email", delaySeconds=3600)
        assert await store.promote_due(now=int(time.time() * 1000) + 7_200_000 * 2) == 1
        promoted = await s.task()
        assert promoted["id"] == delayed["id"]
        # dead-letter (maxAttempts 1 on the next one), then replay
        ack = await s.call(
            {"type": "abandon", "id": promoted["id"], "leaseId": promoted["leaseId"]}
        )
        assert ack["type"] == "ack" and ack["body"] == {"status": "requeued"}
        back = await s.task()  # abandoned: pushed again at once
        assert back["id"] == promoted["id"]
        done = await s.call(
            {
                "type": "result",
                "id": back["id"],
                "leaseId": back["leaseId"],
                "status": "COMPLETED",
                "result": {},
            }
        )
        assert done["type"] == "ack", done
        # DLQ replay: a task with one attempt is nacked into the DLQ, then replayed
        dead = await api.create("email", maxAttempts=1)
        got = await s.task()
        assert got["id"] == dead["id"]
        ack = await s.call({"type": "nack", "id": got["id"], "leaseId": got["leaseId"]})
        assert ack["type"] == "ack" and ack["body"]["status"] != "requeued", ack
        r = await api.call(
            "POST", "/admin/queues/email/dlq/replay", api.admin, {"ids": [dead["id"]]}
        )
        assert r.json()["replayed"] == 1, r.text
        replayed = await s.task()
        assert replayed["id"] == dead["id"]


async def test_stale_lease_409_and_malformed_message_keeps_stream(api: Api) -> None:
    async with open_stream(api) as s:
        await s.ready(1)
        await api.create("email")
        task = await s.task()
        for bad in ("not json", '"hi"', '{"no":"type"}', '{"type":"launch"}', '{"type":"result"}'):
            await s.send(bad)
            err = await s.recv()
            assert err["type"] == "error" and err["status"] == 400, (bad, err)
        await s.send("[1,2]")  # a frame of two messages, each malformed: an error each
        for _ in range(2):
            err = await s.recv()
            assert err["type"] == "error" and err["code"] == "malformed_message", err
        err = await s.call(
            {
                "type": "result",
                "id": task["id"],
                "status": "COMPLETED",
                "result": {},
                "leaseId": "stale",
            }
        )
        assert err["type"] == "error" and err["status"] == 409 and err["code"] == "lease_lost", err
        err = await s.call({"type": "result", "id": task["id"], "status": "BOGUS"})
        assert err["type"] == "error" and err["status"] == 400, err
        err = await s.call({"type": "heartbeat", "id": "no-such-task"})
        assert err["type"] == "error" and err["status"] == 404, err
        ok = await s.call(
            {
                "type": "result",
                "id": task["id"],
                "leaseId": task["leaseId"],
                "status": "COMPLETED",
                "result": {"a": 1},
            }
        )
        assert ok["type"] == "ack" and ok["body"]["result"] == {"a": 1}, ok


async def _frame(s: Stream) -> Any:
    """The next frame as sent (a message, or an array of them), pings answered."""
    with trio.fail_after(STEP):
        while True:
            frame = orjson.loads(await s.ws.receive())
            if isinstance(frame, dict) and frame["type"] == "ping":
                await s.send({"type": "pong"})
                continue
            return frame


async def test_without_frames_every_message_is_a_frame_of_its_own(api: Api) -> None:
    ids = [(await api.create("email"))["id"] for _ in range(3)]
    async with open_stream(api) as s:
        await s.ready(3)
        frames = [await _frame(s) for _ in range(3)]
    assert all(isinstance(f, dict) and f["type"] == "task" for f in frames), frames
    assert {f["task"]["id"] for f in frames} == set(ids)


async def test_frames_carry_arrays_both_ways(api: Api) -> None:
    ids = [(await api.create("email"))["id"] for _ in range(3)]
    async with open_stream(api) as s:
        answer = await s.ready(3, frames=True)
        assert answer["body"]["frames"] is True, answer
        # One claim's tasks are queued together, so they leave as one array frame.
        frame = await _frame(s)
        assert isinstance(frame, list) and len(frame) == 3, frame
        tasks = [m["task"] for m in frame]
        assert [t["id"] for t in tasks] == ids, "claim order, in one frame"
        done = {"type": "result", "status": "COMPLETED", "result": {"ok": 1}}
        results = [
            {**done, "id": t["id"], "leaseId": t["leaseId"], "ref": i} for i, t in enumerate(tasks)
        ]
        # Answers come by ref; a malformed element is refused alone.
        before = stream_messages()
        await s.send(
            [results[0], "junk", results[1], {**results[2], "leaseId": "L-stale"}, {"type": "x"}]
        )
        answers: dict[Any, dict[str, Any]] = {}
        while len(answers) < 5:
            frame = await _frame(s)
            for m in frame if isinstance(frame, list) else [frame]:
                answers[m["ref"] if m["ref"] is not None else m["code"]] = m
        assert answers[0]["type"] == "ack" and answers[0]["status"] == 200, answers
        assert answers[1]["type"] == "ack" and answers[1]["body"]["status"] == "COMPLETED"
        assert answers["malformed_message"]["ref"] is None, answers
        assert answers["unknown_message_type"]["ref"] is None, answers
        assert answers[2]["type"] == "error" and answers[2]["status"] == 409, answers
        # codeq_worker_stream_messages_total counts each message of a frame by its type.
        counted = {k: n - before.get(k, 0) for k, n in stream_messages().items()}
        assert {k: n for k, n in counted.items() if n} == {
            ("in", "result"): 3,
            ("in", "malformed"): 1,
            ("in", "unknown"): 1,
            ("out", "ack"): 2,
            ("out", "error"): 3,
        }, counted
        # Still open and still answering.
        ok = await s.call(
            {"type": "heartbeat", "id": tasks[2]["id"], "leaseId": tasks[2]["leaseId"]}
        )
        assert ok["type"] == "ack", ok
    for task_id in ids[:2]:
        assert await status_of(api, task_id) == "COMPLETED"
    await wait_status(api, ids[2], "PENDING")  # handed back when the stream closed


async def create_many(api: Api, command: str, n: int) -> list[dict[str, Any]]:
    body = {"tasks": [{"command": command, "payload": {"i": i}} for i in range(n)]}
    r = await api.call("POST", "/tasks/batch", api.producer, body)
    assert r.status_code in (200, 202), r.text
    return r.json()["tasks"]  # type: ignore[no-any-return]


def stream_messages() -> dict[tuple[str, str], float]:
    """``codeq_worker_stream_messages_total`` so far in this process, by (direction, type)."""
    metrics.flush()
    return {
        (sample.labels["direction"], sample.labels["type"]): sample.value
        for family in REGISTRY.collect()
        if family.name == "codeq_worker_stream_messages"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def script_calls(script: str) -> float:
    """Calls of ``script`` so far in this process (the store-call histogram; reading it
    collects the whole registry, so it takes a while late in a suite)."""
    metrics.flush()
    sample = REGISTRY.get_sample_value(
        "codeq_store_call_duration_seconds_count", {"script": script}
    )
    return sample or 0.0


async def test_a_frame_of_results_is_one_store_step_and_each_hears_its_own(api: Api) -> None:
    n = 20
    ids = [t["id"] for t in (await create_many(api, "frame", n))]
    async with open_stream(api) as s:
        await s.ready(n, frames=True, commands=["frame"])
        tasks: list[dict[str, Any]] = []
        while len(tasks) < n:
            frame = await _frame(s)
            tasks += [m["task"] for m in (frame if isinstance(frame, list) else [frame])]
        assert sorted(t["id"] for t in tasks) == sorted(ids)
        before = script_calls("result_batch")
        results: list[Any] = [
            {"type": "result", "id": t["id"], "leaseId": t["leaseId"], "ref": i,
             "status": "COMPLETED", "result": {"i": i}}
            for i, t in enumerate(tasks[:-2])
        ]  # fmt: skip
        # Refused alone, in the same frame: a bad status, and a task this worker lost.
        results.append({"type": "result", "id": tasks[-2]["id"], "ref": "bad", "status": "X"})
        results.append(
            {"type": "result", "id": tasks[-1]["id"], "ref": "stale", "leaseId": "L-stale",
             "status": "COMPLETED", "result": {}}
        )  # fmt: skip
        await s.send(results)
        answers: dict[Any, dict[str, Any]] = {}
        while len(answers) < n:
            frame = await _frame(s)
            for m in frame if isinstance(frame, list) else [frame]:
                assert m["type"] in ("ack", "error"), m
                answers[m["ref"]] = m
        for i, t in enumerate(tasks[:-2]):
            a = answers[i]
            assert a["status"] == 200 and a["id"] == t["id"], a
            assert a["body"]["taskId"] == t["id"] and a["body"]["result"] == {"i": i}, a
        assert answers["bad"]["status"] == 400 and answers["bad"]["id"] == tasks[-2]["id"]
        assert answers["stale"]["status"] == 409 and answers["stale"]["id"] == tasks[-1]["id"]
        # The valid ones went to the store together: one result_batch call (one shard).
        assert script_calls("result_batch") - before == 1
        # Their slots are free again: new tasks are pushed to this stream.
        more = [t["id"] for t in (await create_many(api, "frame", n - 2))]
        pushed: list[str] = []
        while len(pushed) < n - 2:
            frame = await _frame(s)
            pushed += [m["task"]["id"] for m in (frame if isinstance(frame, list) else [frame])]
        assert sorted(pushed) == sorted(more)
    for task_id in ids:
        if task_id not in (tasks[-2]["id"], tasks[-1]["id"]):
            assert await status_of(api, task_id) == "COMPLETED"


async def test_a_frame_of_results_frees_its_slots_at_once_and_one_claim_refills_them(
    api: Api,
) -> None:
    """The answers to a frame of results leave as one frame, and the slots they free are
    refilled by one claim: one frame of tasks. (Answered one at a time, each answer let
    the pusher claim for the one slot it freed, and the stream's batches stayed small.)"""
    n = 16
    await create_many(api, "refill", 2 * n)
    async with open_stream(api) as s:
        await s.ready(n, frames=True, commands=["refill"])
        first = await _frame(s)
        assert isinstance(first, list) and len(first) == n, first
        done = {"type": "result", "status": "COMPLETED", "result": {}}
        await s.send(
            [{**done, "id": m["task"]["id"], "leaseId": m["task"]["leaseId"]} for m in first]
        )
        frames: list[list[str]] = []
        while sum(len(f) for f in frames) < 2 * n:
            frame = await _frame(s)
            frames.append([m["type"] for m in (frame if isinstance(frame, list) else [frame])])
    assert frames == [["ack"] * n, ["task"] * n], frames


async def test_a_frame_of_more_than_1000_messages_is_refused_whole(api: Api) -> None:
    async with open_stream(api) as s:
        await s.send([{"type": "ping"}] * 1001)
        err = await s.recv()
        assert err["type"] == "error" and err["status"] == 400, err
        assert "at most 1000" in err["error"], err
        answer = await s.ready(0)
        assert answer["status"] == 200


async def test_closing_the_stream_hands_tasks_back(api: Api) -> None:
    ids = [(await api.create("email"))["id"] for _ in range(3)]
    async with open_stream(api) as s:
        await s.ready(3)
        got = {(await s.task())["id"] for _ in range(3)}
        assert got == set(ids)
    for task_id in ids:
        await wait_status(api, task_id, "PENDING")
    stats = (await api.call("GET", "/admin/queues/email", api.admin)).json()
    assert stats["ready"] == 3 and stats["inProgress"] == 0


async def test_a_dead_connection_hands_tasks_back(api: Api) -> None:
    created = await api.create("email")
    s_ws = await WebSocket.connect(ws_url(api), {"Authorization": f"Bearer {api.worker}"})
    s = Stream(s_ws)
    s.pushed = []
    await s.ready(1)
    assert (await s.task())["id"] == created["id"]
    await s_ws._stream.aclose()  # no close frame: the TCP connection just ends
    await wait_status(api, created["id"], "PENDING")


async def test_shutdown_closes_1001_and_hands_back(
    nursery: trio.Nursery, tmp_path: Any, redis_url: str
) -> None:
    config = make_config(tmp_path, shutdown={"grace_seconds": 5})
    gen = start_api(nursery, config, redis_url)
    api = await gen.__anext__()
    created = await api.create("email")
    ws = await WebSocket.connect(ws_url(api), {"Authorization": f"Bearer {api.worker}"})
    s = Stream(ws)
    s.pushed = []
    await s.ready(2)
    assert (await s.task())["id"] == created["id"]
    api.ctx.shutting_down.set()
    assert (await closed_with(ws)).code == 1001
    meta, _ = await api.ctx.store.get("default", created["id"])
    assert meta["status"] == "PENDING"
    with pytest.raises(StopAsyncIteration):
        await gen.__anext__()


async def test_plain_get_on_the_stream_says_it_is_a_websocket(api: Api) -> None:
    r = await api.call("GET", "/workers/stream", api.worker)
    assert r.status_code == 400 and r.json()["code"] == "websocket_required", r.text


async def test_disabled_streams_refuse_the_upgrade_with_404(
    nursery: trio.Nursery, tmp_path: Any, redis_url: str
) -> None:
    config = make_config(tmp_path, streams={"enabled": False})
    async for api in start_api(nursery, config, redis_url):
        with pytest.raises(HandshakeRefused) as info:
            await WebSocket.connect(ws_url(api), {"Authorization": f"Bearer {api.worker}"})
        assert info.value.status == 404


async def test_a_stream_that_does_not_answer_pings_is_closed_4408(
    nursery: trio.Nursery, tmp_path: Any, redis_url: str
) -> None:
    config = make_config(tmp_path, streams={"ping_interval": "100ms", "ping_timeout": "200ms"})
    async for api in start_api(nursery, config, redis_url):
        # One that answers stays open across several pings...
        async with open_stream(api) as s:
            await s.ready(1)
            pings = 0
            with trio.fail_after(STEP):
                while pings < 3:
                    msg = orjson.loads(await s.ws.receive())
                    if msg["type"] == "ping":
                        pings += 1
                        await s.send({"type": "pong"})
            created = await api.create("email")
            assert (await s.task())["id"] == created["id"]
        # ...one that stays silent is closed, and its task handed back.
        ws = await WebSocket.connect(ws_url(api), {"Authorization": f"Bearer {api.worker}"})
        await ws.send('{"type":"ready","maxInFlight":1}')
        await wait_status(api, created["id"], "IN_PROGRESS")
        with trio.fail_after(STEP):
            with pytest.raises(Closed) as info:
                while True:
                    await ws.receive()
        assert info.value.code == 4408
        await wait_status(api, created["id"], "PENDING")
