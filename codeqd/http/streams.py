"""Worker streams (SPEC §6): ``GET /v1/codeq/workers/stream``, one WebSocket per worker
process in place of the per-task claim → result round trips.

A stream is an actor. Its tasks talk over bounded trio memory channels:

- the *reader* takes the worker's frames: ``pong`` and ``ready`` it applies itself, a
  malformed frame gets an ``error`` (the stream stays open), and ``result``, ``nack``,
  ``heartbeat`` and ``abandon`` go into ``requests`` (bounded: a worker that sends
  faster than the store answers stops being read, which is TCP backpressure);
- the *executors* (a task per request, up to 64 at once, so that a stream's results
  share a group commit; none while idle) run each request through ``_worker_ops`` —
  the very code of the HTTP routes — and queue its ``ack`` or ``error`` (status and
  code as the route would answer);
- the *pusher* claims while the stream has free slots (``maxInFlight`` minus its
  unfinished tasks) and queues each task; it waits on the process's ``WakeHub`` like a
  long-poll (fed by the store's wake-up inbox: ``QueueWork`` wakes it for its
  queues, a ``Resync`` makes it look again), never on a timer;
- the *writer* is the only one that writes to the socket, from ``outgoing`` (bounded
  by ``[streams] send_buffer``): a slow reader stops the pushes, it never grows memory.
  To a worker that asked for ``frames`` it sends everything waiting as one array frame
  (and any worker may send arrays: docs/client.md, "Frames");
- pings: ``{"type":"ping"}`` after ``ping_interval`` of a ping period, and the stream
  closes (4408) when nothing came back within ``ping_timeout``; a stream's pings are not
  a task of its own but an entry in its process's ``Pings`` (``_pings.py``: one task
  for every stream, ``serve`` starts it).

When the stream ends — either side closes, the connection dies, a ping goes unanswered,
or the daemon stops (SIGTERM: stop pushing and reading, answer what was read, then
close 1001) — its unfinished tasks are handed back at once like ``abandon``
(``[streams] on_disconnect = "abandon"``) or left to their leases (``"expire"``).

Close codes: 4400 no hello, 4401 bad token, 4403 missing scope or event type, 4408 ping
timeout, 4429 too many streams, 1001 the daemon is stopping.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import secrets
import socket
from collections.abc import Callable
from typing import Any

import orjson
import structlog
import trio
from quart import Blueprint, Response, current_app, websocket

from codeqd import metrics
from codeqd.auth import ALL_TENANTS, Principal
from codeqd.context import Context
from codeqd.domain.errors import (
    BadRequest,
    CodeqError,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    ValidationError,
)
from codeqd.domain.task import rfc3339, task_to_wire
from codeqd.http import _worker_ops as ops
from codeqd.http._claiming import claim_commands, parse_lease_id
from codeqd.http._pings import Pings
from codeqd.http._request import PREFIX, app_context, error_response
from codeqd.http.deps import charge
from codeqd.store import ClaimedTask, now_ms

log = structlog.get_logger("codeqd.streams")

bp = Blueprint("streams", __name__, url_prefix=PREFIX)

CLOSE_GOING_AWAY = 1001
CLOSE_NO_HELLO = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_PING_TIMEOUT = 4408
CLOSE_TOO_MANY = 4429

#: Message type -> (the operation, the scope it needs, whether it ends the task's slot).
_OPS: dict[str, tuple[Any, str, bool]] = {
    "result": (ops.result, "codeq:result", True),
    "nack": (ops.nack, "codeq:nack", True),
    "abandon": (ops.abandon, "codeq:abandon", True),
    "heartbeat": (ops.heartbeat, "codeq:heartbeat", False),
}
#: Requests a stream has read but not started; past it the stream is not read.
_REQUESTS = 64
#: Requests of one stream in the store at once (they can then share a group commit).
_EXECUTORS = 64
#: Messages in one frame, either way (docs/client.md, "Frames").
_FRAME_ITEMS = 1000
_HAND_BACK_SECONDS = 5.0
#: The registry record: task ids it lists at most, and the shortest gap between updates.
_RECORD_HELD = 20
_RECORD_GAP = 5.0
_RECORD_FIRST = 1.0
_PROCESS = f"{socket.gethostname()}:{os.getpid()}"
_REFUSAL_READ_SECONDS = 0.25


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _open_streams() -> list[int]:
    """This app's count of open streams (one app per ingress process)."""
    app: Any = current_app
    if not hasattr(app, "codeqd_streams"):
        app.codeqd_streams = [0]
    counter: list[int] = app.codeqd_streams
    return counter


def _pings() -> Pings:
    """This app's ``Pings`` (``serve`` makes it and runs its task)."""
    pings: Pings = current_app.codeqd_pings  # type: ignore[attr-defined]
    return pings


def _error(ref: Any, task_id: Any, err: CodeqError) -> dict[str, Any]:
    body = err.body()
    return {
        "type": "error",
        "ref": ref,
        "id": task_id,
        "status": err.status,
        "error": body.get("error", str(err)),
        "code": body.get("code", err.code),
        "details": body.get("details", {}),
    }


def _parse(text: str | bytes) -> list[Any]:
    """The messages of one frame: a message, or (docs/client.md, "Frames") an array."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"malformed JSON: {e}", code="malformed_json") from None
    if isinstance(frame, list):
        if len(frame) > _FRAME_ITEMS:
            raise BadRequest(
                f"a frame holds at most {_FRAME_ITEMS} messages", code="malformed_message"
            )
        return frame
    return [frame]


def _message(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise BadRequest("a message must be a JSON object", code="malformed_message")
    if not isinstance(item.get("type"), str):
        raise ValidationError("type", "expected a string")
    return item


def _ref(msg: dict[str, Any]) -> Any:
    ref = msg.get("ref")
    if ref is None or isinstance(ref, int) or (isinstance(ref, str) and len(ref) <= 128):
        return ref
    return None


class _Stream:
    def __init__(self, ctx: Context, principal: Principal, pings: Pings) -> None:
        self.ctx = ctx
        #: The process's pings, which serve this stream's too.
        self.pings = pings
        self.cfg = ctx.config.streams
        self.principal = principal
        #: task id -> the lease id it was pushed with; one slot each.
        self.unfinished: dict[str, str | None] = {}
        #: task id -> when its lease ends (trio clock; pushed, then each heartbeat). Past
        #: it the task is no longer this stream's (the reaper requeues it): its slot frees
        #: even if the worker never says a word about it again.
        self.lease_ends: dict[str, float] = {}
        self.max_in_flight = 0
        self.frames = False  # whether the worker takes arrays of messages in a frame
        self.commands: list[str] | None = None
        self.lease_seconds = ctx.config.tasks.default_lease_seconds
        self.changed = trio.Event()  # ready replaced, or a slot freed
        self.last_heard = trio.current_time()
        self.close_code: int | None = None
        self.close_reason = ""
        self.out_send, self.out_recv = trio.open_memory_channel[dict[str, Any]](
            self.cfg.send_buffer
        )
        self.req_send, self.req_recv = trio.open_memory_channel[dict[str, Any]](_REQUESTS)
        self.reading = trio.CancelScope()
        self.pushing = trio.CancelScope()
        self.watching = trio.CancelScope()
        #: When the ping waiting for an answer went out (None: none is).
        self.ping_sent: float | None = None
        self.unping: Callable[[], None] = lambda: None
        #: Its record in the store's registry of streams (the dashboard's workers page).
        self.id = secrets.token_hex(8)
        self.opened = rfc3339(now_ms())
        self.remote = _remote()
        self.touched = trio.Event()  # what the record shows has changed

    # ------------------------------------------------------------------ the actor

    async def run(self) -> None:
        """Serve the stream until it ends (``self.pings`` pings it meanwhile)."""
        first = float(self.cfg.ping_interval) * random.uniform(0.5, 1.5)
        self.unping = self.pings.add(self, trio.current_time() + first)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                nursery.start_soon(self._watch)
                nursery.start_soon(self._pusher)
                nursery.start_soon(self._executors)
                with self.reading:
                    await self._reader()
                # Stop reading (shutdown, ping timeout): answer what was read, then end.
                self.req_send.close()
                self.pushing.cancel()
                self.watching.cancel()
                self.unping()
                nursery.cancel_scope.deadline = trio.current_time() + float(
                    self.ctx.config.shutdown.grace_seconds
                )
        finally:
            self.unping()

    def finish(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self.reading.cancel()
        self.pushing.cancel()
        self.watching.cancel()

    async def _watch(self) -> None:
        """The registry record and the shutdown watch, both ending with the stream."""
        with self.watching:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._registrar)
                await self.ctx.shutting_down.wait()
                self.finish(CLOSE_GOING_AWAY, "codeqd is stopping")

    async def _send(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await self.out_send.send(msg)

    async def _send_all(self, msgs: list[dict[str, Any]]) -> None:
        """Queue ``msgs`` without a yield while there is room, so that the writer finds
        them together (one frame, with ``frames``) and, for answers, so that the slots
        they free are all free when the pusher next looks (one claim fills them)."""
        for msg in msgs:
            try:
                self.out_send.send_nowait(msg)
            except trio.WouldBlock:
                await self._send(msg)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return

    async def _writer(self) -> None:
        out = self.out_recv
        async with out:
            async for msg in out:
                if not self.frames:
                    _count("out", msg["type"])
                    await websocket.send(orjson.dumps(msg).decode())
                    continue
                # The worker takes arrays (``ready`` with ``"frames": true``): what is
                # waiting goes out as one frame, one write instead of one per message.
                batch = [msg]
                while len(batch) < _FRAME_ITEMS:
                    try:
                        batch.append(out.receive_nowait())
                    except trio.WouldBlock:
                        break
                _count_all("out", [m["type"] for m in batch])
                await websocket.send(orjson.dumps(batch if len(batch) > 1 else msg).decode())

    def ping_due(self, now: float) -> float | None:
        """A ping period (``Pings`` calls it when due): ping after ``ping_interval``, then
        close (4408) unless something came back within ``ping_timeout``; so a silent
        stream is pinged every ``ping_interval + ping_timeout``. Never blocks: a ping
        that finds the outgoing buffer full is not sent, and the worker, which is not
        reading, must have sent something else in time."""
        if self.ping_sent is None:
            try:
                self.out_send.send_nowait({"type": "ping"})
            except trio.WouldBlock:
                pass
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return None
            self.ping_sent = now
            return now + float(self.cfg.ping_timeout)
        if self.last_heard < self.ping_sent:
            log.info("streams.ping_timeout", sub=self.principal.sub)
            self.finish(CLOSE_PING_TIMEOUT, "no answer to ping")
            return None
        self.ping_sent = None
        return now + float(self.cfg.ping_interval)

    # ------------------------------------------------------------------ worker -> server

    async def _reader(self) -> None:
        while True:
            text = await websocket.receive()
            self.last_heard = trio.current_time()
            try:
                items = _parse(text)
            except CodeqError as err:
                _count("in", "malformed")
                await self._send(_error(None, None, err))
                continue
            kinds = [await self._take(item) for item in items]
            _count_all("in", kinds)

    async def _take(self, item: Any) -> str:
        """One message from the worker: applied, queued for the store, or refused.
        Returns its kind as ``codeq_worker_stream_messages_total`` counts it."""
        try:
            msg = _message(item)
        except CodeqError as err:
            await self._send(_error(None, None, err))
            return "malformed"
        kind: str = msg["type"]  # a string: _message checked it
        if kind == "pong":
            return kind
        if kind == "ping":
            await self._send({"type": "pong"})
            return kind
        ref, task_id = _ref(msg), msg.get("id")
        try:
            if kind == "ready":
                await self._send(self._ready(msg, ref))
            elif kind in _OPS:
                if not isinstance(task_id, str) or not task_id:
                    raise ValidationError("id", "expected the task id (a string)")
                # Queued without a yield while there is room, so that the executors
                # find a frame's requests together (its results: one batch).
                try:
                    self.req_send.send_nowait(msg)
                except trio.WouldBlock:
                    await self.req_send.send(msg)
            elif kind == "hello":
                raise BadRequest("already authenticated", code="already_authenticated")
            else:
                raise ValidationError(
                    "type", f"unknown message type {kind!r}", code="unknown_message_type"
                )
        except CodeqError as err:
            await self._send(_error(ref, task_id if isinstance(task_id, str) else None, err))
        return kind if kind in _KNOWN else "unknown"

    def _ready(self, msg: dict[str, Any], ref: Any) -> dict[str, Any]:
        cfg = self.ctx.config
        commands = claim_commands(self.principal, msg)
        n = msg.get("maxInFlight", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValidationError("maxInFlight", "expected an integer >= 0")
        lease = msg.get("leaseSeconds", cfg.tasks.default_lease_seconds)
        if (
            not isinstance(lease, int)
            or isinstance(lease, bool)
            or not 1 <= lease <= cfg.limits.max_lease_seconds
        ):
            raise ValidationError(
                "leaseSeconds", f"expected an integer in [1, {cfg.limits.max_lease_seconds}]"
            )
        frames = msg.get("frames", False)
        if not isinstance(frames, bool):
            raise ValidationError("frames", "expected a boolean")
        self.commands = commands
        self.frames = frames
        self.max_in_flight = min(n, self.cfg.max_in_flight)
        self.lease_seconds = lease
        self._poke()
        self.touched.set()
        body = {
            "commands": commands,
            "maxInFlight": self.max_in_flight,
            "leaseSeconds": lease,
            "inFlight": len(self.unfinished),
            "frames": frames,
        }
        return {"type": "ack", "ref": ref, "id": None, "status": 200, "body": body}

    def record(self) -> dict[str, Any]:
        """What the dashboard's workers page shows of this stream."""
        return {
            "id": self.id,
            "sub": self.principal.sub,
            "commands": self.commands,
            "maxInFlight": self.max_in_flight,
            "inFlight": len(self.unfinished),
            "holding": list(itertools.islice(self.unfinished, _RECORD_HELD)),
            "leaseSeconds": self.lease_seconds,
            "frames": self.frames,
            "openedAt": self.opened,
            "updatedAt": rfc3339(now_ms()),
            "process": _PROCESS,
            "remote": self.remote,
        }

    async def _registrar(self) -> None:
        """Keep this stream's record in the store's registry: once its first ``ready``
        is in (or after a second), then after a change (at most every
        ``_RECORD_GAP`` seconds) and at least every two ping periods (an idle stream
        costs one write per 80 s by default). Advisory: a store error only delays it;
        the record expires by itself two refresh periods after its process died.
        Its times are rounded up as the pings' are, so that idle streams' refreshes wake
        together (``Pings.round_up``)."""
        interval = 2 * (float(self.cfg.ping_interval) + float(self.cfg.ping_timeout))
        ttl_ms = int(2 * interval * 1000)
        tenant = self.principal.tenant
        at = self.pings.round_up
        with trio.move_on_at(at(trio.current_time() + _RECORD_FIRST)):
            await self.touched.wait()
        while True:
            self.touched = trio.Event()
            try:
                await self.ctx.store.streams.put(tenant, self.id, self.record(), ttl_ms)
            except Exception as err:  # the store is away: the next round tries again
                log.debug("streams.record_failed", stream=self.id, error=repr(err))
            written = trio.current_time()
            await trio.sleep_until(at(written + _RECORD_GAP))
            with trio.move_on_at(at(written + max(interval, _RECORD_GAP))):
                await self.touched.wait()

    async def forget(self) -> None:
        """Take the record out of the registry (the stream has ended)."""
        try:
            await self.ctx.store.streams.delete(self.principal.tenant, self.id)
        except Exception as err:  # it expires by itself
            log.debug("streams.record_failed", stream=self.id, error=repr(err))

    def _poke(self) -> None:
        # Set, not replaced: the pusher takes a fresh event before it looks (a slot freed
        # per result was a new Event per task).
        self.changed.set()

    async def _executors(self) -> None:
        """Run what was read, at most ``_EXECUTORS`` tasks at once; none while the stream
        is idle. The results waiting together (a frame of them) go as one batch, in one
        task and one store step per shard; any other request runs in a task of its own
        (so that concurrent ones share a group commit)."""
        slots = trio.Semaphore(_EXECUTORS)
        async with self.req_recv, trio.open_nursery() as nursery:
            async for msg in self.req_recv:
                waiting = [msg]
                while len(waiting) < _REQUESTS:
                    try:
                        waiting.append(self.req_recv.receive_nowait())
                    except trio.WouldBlock:
                        break
                results = [m for m in waiting if m["type"] == "result"]
                if len(results) > 1:
                    await slots.acquire()
                    nursery.start_soon(self._execute_results, results, slots)
                    waiting = [m for m in waiting if m["type"] != "result"]
                for m in waiting:
                    await slots.acquire()
                    nursery.start_soon(self._execute, m, slots)
        self.out_send.close()  # everything read is answered: the writer may end

    async def _execute(self, msg: dict[str, Any], slots: trio.Semaphore) -> None:
        try:
            await self._send(await self._apply(msg))
        finally:
            slots.release()

    async def _execute_results(self, msgs: list[dict[str, Any]], slots: trio.Semaphore) -> None:
        try:
            leases: list[tuple[str | None, str | None]] = []
            items: list[tuple[str, dict[str, Any], str | None]] = []
            refused: dict[int, CodeqError] = {}
            for i, msg in enumerate(msgs):
                try:
                    ours, lease = self._lease(msg, "codeq:result")
                except CodeqError as err:
                    refused[i] = err
                    ours = lease = None
                leases.append((ours, lease))
                if i not in refused:
                    items.append((msg["id"], msg, lease))
            try:
                done = iter(await ops.results(self.ctx, self.principal, items))
            except CodeqError as err:  # the store step failed: every item hears it
                done = iter([err] * len(items))
            answers: list[dict[str, Any]] = []
            for i, msg in enumerate(msgs):
                outcome = refused.get(i) or next(done)
                ours, lease = leases[i]
                answers.append(self._answer(msg, ours, lease, outcome, ends=True))
            await self._send_all(answers)
        finally:
            slots.release()

    def _lease(self, msg: dict[str, Any], scope: str) -> tuple[str | None, str | None]:
        """The lease the task was pushed with, and the one to present (the message's
        ``leaseId`` if it names one); refuses a token without ``scope``."""
        ours = lease = self.unfinished.get(msg["id"])
        if scope not in self.principal.scopes:
            raise Forbidden(f"token lacks the {scope!r} scope", scope=scope)
        given = parse_lease_id(msg.get("leaseId"))
        return ours, given if given is not None else lease

    async def _apply(self, msg: dict[str, Any]) -> dict[str, Any]:
        op, scope, ends = _OPS[msg["type"]]
        ours = lease = self.unfinished.get(msg["id"])
        outcome: dict[str, Any] | CodeqError
        try:
            ours, lease = self._lease(msg, scope)
            outcome = await op(self.ctx, self.principal, msg["id"], msg, lease)
        except CodeqError as err:
            outcome = err
        return self._answer(msg, ours, lease, outcome, ends=ends)

    def _answer(
        self,
        msg: dict[str, Any],
        ours: str | None,
        lease: str | None,
        outcome: dict[str, Any] | CodeqError,
        *,
        ends: bool,
    ) -> dict[str, Any]:
        """The ack or error for ``msg``, freeing its slot when the task is no longer ours."""
        ref, task_id = _ref(msg), msg["id"]
        if isinstance(outcome, (NotFound, Conflict)):
            if lease == ours:  # refused with the lease we pushed: the task is not ours now
                self._free(task_id)
            return _error(ref, task_id, outcome)
        if isinstance(outcome, CodeqError):
            return _error(ref, task_id, outcome)
        body = outcome
        if ends:
            self._free(task_id)
        elif task_id in self.unfinished:  # a heartbeat: the lease runs this much longer
            extend = msg.get("extendSeconds")
            if not isinstance(extend, int):
                extend = self.ctx.config.tasks.default_lease_seconds
            self.lease_ends[task_id] = trio.current_time() + extend
        return {"type": "ack", "ref": ref, "id": task_id, "status": 200, "body": body}

    def _free(self, task_id: str) -> None:
        self.lease_ends.pop(task_id, None)
        if self.unfinished.pop(task_id, ...) is not ...:
            self._poke()
            self.touched.set()

    def _expire(self) -> None:
        """Free the slots of tasks whose lease ended without a word from the worker."""
        now = trio.current_time()
        for task_id in [t for t, end in self.lease_ends.items() if end <= now]:
            self._free(task_id)

    # ------------------------------------------------------------------ server -> worker

    async def _pusher(self) -> None:
        ctx, hub = self.ctx, self.ctx.hub
        fallback = float(ctx.actor_config("ingress").poll_fallback)
        shards: set[int] | None = None
        with self.pushing:
            while not ctx.shutting_down.is_set():
                if self.changed.is_set():
                    self.changed = trio.Event()
                changed = self.changed  # taken before looking: a change after it wakes us
                free = self.max_in_flight - len(self.unfinished)
                if free <= 0:
                    with trio.move_on_at(min(self.lease_ends.values(), default=math.inf)):
                        await changed.wait()
                    self._expire()
                    # Results answered by one group commit free their slots in the same
                    # scheduler pass: one yield lets them all in, so one claim fills them.
                    await trio.lowlevel.checkpoint()
                    continue
                commands = self.commands
                # Register before looking, so a wake-up between the look and the wait is kept.
                with hub.claim_waiter(self.principal.tenant, commands) as waiter:
                    async with hub.check(math.inf):
                        tasks = await self._claim(commands, free, shards)
                    ends = trio.current_time() + self.lease_seconds
                    for task in tasks:
                        self.unfinished[task.meta["id"]] = task.meta.get("leaseId")
                        self.lease_ends[task.meta["id"]] = ends
                    await self._send_all(
                        [{"type": "task", "task": task_to_wire(t.meta, t.payload)} for t in tasks]
                    )
                    if tasks:
                        self.touched.set()
                        shards = None
                        continue  # look again at once: there may be more
                    with trio.move_on_at(hub.wait_until(math.inf, fallback)):
                        await _first(waiter.event, changed)
                    shards = waiter.shards_to_check()

    async def _claim(
        self, commands: list[str] | None, free: int, shards: set[int] | None
    ) -> list[ClaimedTask]:
        p = self.principal
        try:
            if self.ctx.config.ratelimit.enabled:
                await charge(self.ctx, p, "claim")
            return await self.ctx.store.claim(
                p.tenant, p.sub, commands, self.lease_seconds, free, shards
            )
        except RateLimited as err:
            await trio.sleep(float(err.retry_after or 1))
        except CodeqError as err:  # the store is away: try again shortly
            log.warning("streams.claim_failed", sub=p.sub, error=str(err))
            await trio.sleep(1.0)
        return []

    async def hand_back(self) -> None:
        """The unfinished tasks go back to their queues (``on_disconnect = "abandon"``)."""
        self._expire()  # their leases ended: not ours to hand back
        tasks, self.unfinished = self.unfinished, {}
        if not tasks or self.cfg.on_disconnect != "abandon":
            return
        p = self.principal
        handed = 0
        for task_id, lease in tasks.items():
            try:
                await self.ctx.store.abandon(p.tenant, task_id, p.sub, lease)
                handed += 1
            except CodeqError as err:  # finished or expired meanwhile: nothing to hand back
                log.debug("streams.hand_back_skipped", task_id=task_id, code=err.code)
            except Exception as err:  # the store is gone: the leases expire instead
                log.warning("streams.hand_back_failed", sub=p.sub, error=repr(err))
                return
        log.info("streams.handed_back", sub=p.sub, tasks=handed)


def _remote() -> str:
    addr = websocket.remote_addr
    return str(addr) if addr else ""


def _count(direction: str, kind: str) -> None:
    """One message in ``codeq_worker_stream_messages_total`` (``metrics.add`` tallies it)."""
    metrics.add(metrics.STREAM_MESSAGES, direction, kind)


def _count_all(direction: str, kinds: list[str]) -> None:
    """``_count`` for each of a frame's messages, once per kind (a frame is mostly one)."""
    if len(kinds) == 1:
        _count(direction, kinds[0])
        return
    metrics.inc_each(metrics.STREAM_MESSAGES, ((direction, kind) for kind in kinds))


_KNOWN = frozenset({"ready", "result", "nack", "heartbeat", "abandon", "ping", "pong", "hello"})


async def _first(*events: trio.Event) -> None:
    """Return when any of ``events`` is set."""
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait, event)


async def _authenticate(ctx: Context) -> Principal:
    header = websocket.headers.get("Authorization")
    if not header:
        with trio.move_on_after(float(ctx.config.streams.hello_timeout)) as scope:
            text = await websocket.receive()
        if scope.cancelled_caught:
            raise _Refused(CLOSE_NO_HELLO, "no hello within streams.hello_timeout")
        try:
            items = _parse(text)
            msg = _message(items[0]) if len(items) == 1 else {}
        except CodeqError:
            raise _Refused(CLOSE_UNAUTHORIZED, "the first message must be a hello") from None
        token = msg.get("token")
        if msg.get("type") != "hello" or not isinstance(token, str) or not token:
            raise _Refused(CLOSE_UNAUTHORIZED, 'expected {"type":"hello","token":...}')
        header = f"Bearer {token}"
    try:
        principal = await ctx.auth.authenticate(header, "worker")
    except Unauthorized as err:
        raise _Refused(CLOSE_UNAUTHORIZED, str(err)[:100]) from None
    except Forbidden as err:
        raise _Refused(CLOSE_FORBIDDEN, str(err)[:100]) from None
    if principal.tenant == ALL_TENANTS:
        raise _Refused(CLOSE_FORBIDDEN, "tenant '*' is only valid on /admin routes")
    if "codeq:claim" not in principal.scopes:
        raise _Refused(CLOSE_FORBIDDEN, "token lacks the 'codeq:claim' scope")
    return principal


@bp.websocket("/workers/stream")
async def stream() -> Response | None:
    ctx = app_context()
    if not ctx.config.streams.enabled:
        return error_response(
            NotFound("worker streams are disabled ([streams] enabled)", code="route_not_found")
        )
    await websocket.accept()
    counter = _open_streams()
    if counter[0] >= ctx.config.streams.max_streams:
        await websocket.close(CLOSE_TOO_MANY, "too many streams (streams.max_streams)")
        return None
    counter[0] += 1
    metrics.STREAMS_OPEN.inc()
    session: _Stream | None = None
    try:
        try:
            principal = await _authenticate(ctx)
        except _Refused as refused:
            log.info("streams.refused", code=refused.code, reason=refused.reason)
            # A worker usually sends "ready" right after the upgrade: read it first, or the
            # connection, closed with unread data, is reset and the worker may never see
            # the close code.
            with trio.move_on_after(_REFUSAL_READ_SECONDS):
                await websocket.receive()
            await websocket.close(refused.code, refused.reason)
            return None
        session = _Stream(ctx, principal, _pings())
        log.info("streams.open", sub=principal.sub, tenant=principal.tenant)
        await session.run()
    finally:
        counter[0] -= 1
        metrics.STREAMS_OPEN.dec()
        if session is not None:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + _HAND_BACK_SECONDS
                await session.hand_back()
                await session.forget()
                log.info(
                    "streams.closed",
                    sub=session.principal.sub,
                    code=session.close_code,
                    reason=session.close_reason,
                )
    if session is not None and session.close_code is not None:
        await websocket.close(session.close_code, session.close_reason)
    return None
