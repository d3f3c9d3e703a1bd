"""The worker stream (``GET /v1/codeq/workers/stream``, codeqd's extension; protocol
in ``docs/client.md``): tasks pushed by the daemon, and the lease holder's calls
(heartbeat, result, nack, abandon) sent as messages and answered by ``ack``/``error``.

:class:`WorkerStream` speaks the protocol; it builds each message from the same
:class:`~codeqd_client._calls.Call` the HTTP client sends, and reads the answer with
that call's parser, so both doors behave alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from codeqd_client import _json
from codeqd_client._calls import Call, Leases
from codeqd_client._exceptions import (
    CodeqError,
    ServerError,
    Unreachable,
    error_from_response,
)
from codeqd_client._models import Task
from codeqd_client._ws import Closed, HandshakeRefused, WebSocket

T = TypeVar("T")

STREAM_PATH = "/workers/stream"
#: Messages waiting to be sent; past it a sender waits.
_OUTGOING = 1024
#: Messages in one frame (the daemon takes at most 1,000).
_FRAME_ITEMS = 1000


class StreamUnsupported(Exception):
    """The daemon serves no worker stream (e.g. the Go codeQ): use HTTP long-polling."""


@dataclass
class _Waiting:
    event: anyio.Event
    answer: dict[str, Any] | None = None


def close_error(closed: Closed) -> CodeqError:
    """The client exception for a stream the daemon closed."""
    if closed.code == 4401:
        reason = closed.reason or "invalid token"
        return error_from_response(401, {"error": reason, "code": "unauthorized"})
    if closed.code == 4403:
        reason = closed.reason or "missing scope"
        return error_from_response(403, {"error": reason, "code": "forbidden"})
    return Unreachable(f"worker stream closed ({closed.code} {closed.reason})".strip())


class WorkerStream:
    """One open worker stream. ``run()`` reads it (tasks go to ``tasks``); the other
    methods may be called from any task while it runs."""

    def __init__(self, ws: WebSocket, leases: Leases, buffer: int) -> None:
        self.ws = ws
        self.leases = leases
        #: Whether the daemon takes arrays of messages in one frame (its ``ready`` ack
        #: says so): then what is waiting to be sent goes out as one frame.
        self.frames = False
        self._refs = itertools.count(1)
        self._waiting: dict[int, _Waiting] = {}
        self._send_tasks: MemoryObjectSendStream[Task]
        self.tasks: MemoryObjectReceiveStream[Task]
        self._send_tasks, self.tasks = anyio.create_memory_object_stream[Task](max(1, buffer))
        self._out: MemoryObjectSendStream[dict[str, Any]]
        self._out_recv: MemoryObjectReceiveStream[dict[str, Any]]
        self._out, self._out_recv = anyio.create_memory_object_stream[dict[str, Any]](_OUTGOING)
        self._broken: CodeqError | None = None

    @classmethod
    async def open(
        cls,
        base_url: str,
        headers: Mapping[str, str],
        *,
        leases: Leases | None = None,
        buffer: int = 1,
        timeout: float = 10.0,
    ) -> WorkerStream:
        """Connect; raises :class:`StreamUnsupported` when the daemon answers the upgrade
        with an HTTP status (no such route), :class:`Unreachable` when it cannot be
        reached."""
        wanted = {k: v for k, v in headers.items() if k.lower() in ("authorization", "user-agent")}
        try:
            ws = await WebSocket.connect(base_url + STREAM_PATH, wanted, timeout=timeout)
        except HandshakeRefused as e:
            raise StreamUnsupported(str(e)) from e
        except (OSError, TimeoutError) as e:
            raise Unreachable(f"worker stream: codeqd did not answer ({e})") from e
        return cls(ws, leases or Leases(), buffer)

    async def run(self) -> None:
        """Read (and write) until the stream closes; raises the :class:`CodeqError` it
        closed with."""
        closed: CodeqError | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._writer)
                try:
                    await self._reader()
                except CodeqError as e:  # raised below, not wrapped in an exception group
                    closed = e
                tg.cancel_scope.cancel()
            if closed is not None:
                raise closed
        finally:
            self._send_tasks.close()
            for waiting in self._waiting.values():
                waiting.event.set()  # no answer: the caller raises Unreachable

    async def _reader(self) -> None:
        while True:
            try:
                text = await self.ws.receive()
            except Closed as closed:
                raise close_error(closed) from None
            try:
                frame = _json.loads(text)
            except ValueError:
                continue
            for msg in frame if isinstance(frame, list) else (frame,):
                if isinstance(msg, dict):
                    await self._take(msg)

    async def _take(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "task" and isinstance(msg.get("task"), dict):
            task = self.leases.remember(Task.from_wire(msg["task"]))
            await self._send_tasks.send(task)
        elif kind in ("ack", "error"):
            waiting = self._waiting.get(msg.get("ref"))  # type: ignore[arg-type]
            if waiting is not None:
                waiting.answer = msg
                waiting.event.set()
        elif kind == "ping":
            await self._send({"type": "pong"})

    async def _writer(self) -> None:
        """The only writer of the socket: one frame per message, or (``frames``) one
        frame for everything waiting."""
        async with self._out_recv:
            async for msg in self._out_recv:
                batch = [msg]
                while self.frames and len(batch) < _FRAME_ITEMS:
                    try:
                        batch.append(self._out_recv.receive_nowait())
                    except anyio.WouldBlock:
                        break
                try:
                    await self.ws.send(_json.dumps(batch if len(batch) > 1 else msg).decode())
                except Closed as closed:
                    self._broken = close_error(closed)
                    return

    async def _send(self, msg: dict[str, Any]) -> None:
        if self._broken is not None:
            raise self._broken
        try:
            await self._out.send(msg)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise self._broken or Unreachable("worker stream closed") from None

    async def request(self, msg: dict[str, Any]) -> tuple[int, Any]:
        """Send ``msg`` with a fresh ``ref`` and wait for its answer: (status, body)."""
        ref = next(self._refs)
        waiting = self._waiting[ref] = _Waiting(anyio.Event())
        try:
            await self._send({**msg, "ref": ref})
            await waiting.event.wait()
        finally:
            del self._waiting[ref]
        answer = waiting.answer
        if answer is None:
            raise Unreachable(f"worker stream closed before answering {msg.get('type')}")
        status = answer.get("status")
        if not isinstance(status, int):
            raise ServerError(f"worker stream: malformed answer {answer!r}", status=0)
        if answer.get("type") == "error":
            return status, answer
        return status, answer.get("body")

    async def ready(
        self, commands: Iterable[str] | None, max_in_flight: int, lease_seconds: int | None
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "ready", "maxInFlight": max_in_flight, "frames": True}
        if commands is not None:
            msg["commands"] = list(commands)
        if lease_seconds is not None:
            msg["leaseSeconds"] = lease_seconds
        status, body = await self.request(msg)
        if status >= 400:
            raise error_from_response(status, body)
        answer = body if isinstance(body, dict) else {}
        self.frames = answer.get("frames") is True
        return answer

    async def send_call(self, call: Call[T]) -> T:
        """A lease holder's HTTP call (heartbeat, result, nack, abandon) as a message."""
        parts = call.path.rstrip("/").split("/")  # /tasks/<id>/<kind>
        kind, task_id = parts[-1], parts[-2]
        msg: dict[str, Any] = {"type": kind, "id": task_id, **(call.json or {})}
        status, body = await self.request(msg)
        if status >= 400:
            raise error_from_response(status, body, lease_call=call.lease_call)
        try:
            return call.parse(status, body)
        except (ValueError, TypeError, KeyError) as e:
            raise ServerError(f"unexpected answer to {kind} ({status}): {e}", status=status) from e

    async def aclose(self, code: int = 1000) -> None:
        await self.ws.close(code)
