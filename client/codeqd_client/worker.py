"""The worker runner: claim tasks, run their handlers, keep leases alive, report.

``await run(handlers={"CMD": fn}, ...)`` from trio or asyncio (it is written on
anyio), or ``run_sync(...)`` from plain code. Handlers receive the claimed
:class:`~codeqd_client.Task`; they may be ``async def`` (run on the event loop)
or plain functions (run in a worker thread).
Returning completes the task with the return value; raising nacks it with the
exception's message (so it is retried with the daemon's backoff); raising
:class:`Fail` reports a permanent failure and :class:`Retry` a retry after a
chosen delay.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus

from codeqd_client import (
    AsyncWorkerClient,
    BadRequest,
    CodeqError,
    Forbidden,
    LeaseLost,
    NotFound,
    RateLimited,
    Task,
    Unauthorized,
    _calls,
    _json,
)
from codeqd_client._stream import StreamUnsupported, WorkerStream

log = logging.getLogger("codeqd.worker")  # the name codeqd users already configure

#: A handler: ``fn(task) -> result`` or ``async fn(task) -> result``.
Handler = Callable[[Task], Any] | Callable[[Task], Awaitable[Any]]


class Waitable(Protocol):
    """Anything with ``async wait()``: an anyio, trio or asyncio ``Event``."""

    def wait(self) -> Awaitable[object]: ...


#: Errors no retry can cure: the runner stops and ``run`` raises them.
FATAL = (Unauthorized, Forbidden, BadRequest)

#: Bound on the time spent reporting one task's outcome (complete, nack, abandon).
REPORT_TIMEOUT = 15.0

#: How tasks reach the runner: the worker stream (``"stream"``), HTTP long-polling
#: (``"http"``), or the stream when the daemon serves it, else long-polling (``"auto"``).
Transport = Literal["auto", "stream", "http"]


class Fail(Exception):
    """Raise from a handler to report the task FAILED (terminal, not retried)."""


class Retry(Exception):
    """Raise from a handler to nack the task with a chosen delay (seconds)."""

    def __init__(self, reason: str = "retry requested", *, delay: int | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


def reason_of(exc: BaseException, limit: int = 4096) -> str:
    """The nack reason for a handler's exception: ``Type: message``, at most ``limit`` chars."""
    text = str(exc)
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return reason if len(reason) <= limit else "..." + reason[-(limit - 3) :]


def result_object(value: Any) -> dict[str, Any]:
    """A handler's return value as the result object the daemon needs.

    ``None`` → ``{}``, a mapping as itself, anything else as ``{"value": ...}``.
    Raises TypeError (so the task is nacked) when it is not JSON.
    """
    if value is None:
        out: dict[str, Any] = {}
    elif isinstance(value, Mapping):
        out = dict(value)
    else:
        out = {"value": value}
    try:
        _json.dumps(out)
    except (TypeError, ValueError) as e:  # ValueError: NaN or infinity
        raise TypeError(f"handler result is not JSON: {e}") from None
    return out


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
    )


async def call_handler(
    handler: Handler, task: Task, limiter: anyio.CapacityLimiter | None = None
) -> Any:
    """Run one handler: on the event loop if async, else in a thread (bounded by ``limiter``).

    A sync handler cannot be interrupted: on cancellation the runner stops
    waiting for its thread (``abandon_on_cancel``) and the thread runs on
    until the function returns, holding its ``limiter`` token; its result is
    then discarded.
    """
    if _is_async(handler):
        return await handler(task)
    value = await anyio.to_thread.run_sync(
        functools.partial(handler, task), abandon_on_cancel=True, limiter=limiter
    )
    if inspect.isawaitable(value):  # e.g. a lambda returning a coroutine
        return await value
    return value


@dataclass(frozen=True)
class Outcome:
    """What to tell the daemon about a task when its handler is done."""

    action: Literal["complete", "nack", "fail", "abandon"]
    result: dict[str, Any] | None = None
    reason: str | None = None
    delay: int | None = None


class _Calls(Protocol):
    """The lease holder's calls the runner makes (HTTP client or worker stream)."""

    async def heartbeat(self, task: Task, *, extend_seconds: int | None = None) -> Any: ...
    async def complete(self, task: Task, result: Mapping[str, Any] | None = None) -> Any: ...
    async def fail(self, task: Task, error: str) -> Any: ...
    async def nack(
        self, task: Task, reason: str | None = None, *, delay_seconds: int | None = None
    ) -> Any: ...
    async def abandon(self, task: Task) -> Any: ...


class _StreamCalls:
    """The lease holder's calls as worker-stream messages while the stream is open,
    over HTTP otherwise (e.g. while reconnecting; with ``on_disconnect = "expire"``
    the task may still be ours)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def _send(self, call: _calls.Call[Any], http: Callable[[], Awaitable[Any]]) -> Any:
        stream = self.runner._stream
        if stream is None:
            return await http()
        return await stream.send_call(call)

    async def heartbeat(self, task: Task, *, extend_seconds: int | None = None) -> Any:
        c = self.runner.client
        return await self._send(
            _calls.heartbeat(task.id, task.lease_id, extend_seconds),
            lambda: c.heartbeat(task, extend_seconds=extend_seconds),
        )

    async def complete(self, task: Task, result: Mapping[str, Any] | None = None) -> Any:
        c = self.runner.client
        return await self._send(
            _calls.report(task.id, task.lease_id, "COMPLETED", result=result),
            lambda: c.complete(task, result),
        )

    async def fail(self, task: Task, error: str) -> Any:
        c = self.runner.client
        return await self._send(
            _calls.report(task.id, task.lease_id, "FAILED", error=error),
            lambda: c.fail(task, error),
        )

    async def nack(
        self, task: Task, reason: str | None = None, *, delay_seconds: int | None = None
    ) -> Any:
        c = self.runner.client
        return await self._send(
            _calls.nack(task.id, task.lease_id, reason, delay_seconds),
            lambda: c.nack(task, reason, delay_seconds=delay_seconds),
        )

    async def abandon(self, task: Task) -> Any:
        c = self.runner.client
        return await self._send(_calls.abandon(task.id, task.lease_id), lambda: c.abandon(task))


@dataclass(eq=False)
class _Job:
    task: Task
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    lost: bool = False


class Runner:
    """One worker process's loop; :func:`run` is the usual way to use it.

    ``stop()`` (also on SIGTERM/SIGINT when ``handle_signals``) stops claiming,
    gives running handlers ``grace_seconds`` to finish, then cancels them and
    abandons their tasks so another worker takes them at once. A second stop
    skips the rest of the grace period.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        client: AsyncWorkerClient,
        *,
        concurrency: int = 1,
        lease_seconds: int = 60,
        wait_seconds: int = 20,
        grace_seconds: float = 10.0,
        handle_signals: bool = True,
        transport: Transport = "auto",
    ) -> None:
        if not handlers:
            raise ValueError("at least one handler is needed")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lease_seconds < 1:
            raise ValueError("lease_seconds must be at least 1")
        self.handlers = dict(handlers)
        self.client = client
        self.concurrency = concurrency
        self.lease_seconds = int(lease_seconds)
        self.wait_seconds = max(0, min(30, int(wait_seconds)))
        self.grace_seconds = max(0.0, grace_seconds)
        self.handle_signals = handle_signals
        if transport not in ("auto", "stream", "http"):
            raise ValueError("transport must be 'auto', 'stream' or 'http'")
        self.transport: Transport = transport
        #: The open worker stream (None: not connected, or HTTP long-polling).
        self._stream: WorkerStream | None = None
        #: The transport in use once known: "stream" or "http".
        self.using: Literal["stream", "http"] | None = "http" if transport == "http" else None
        self._calls: _Calls = self.client if transport == "http" else _StreamCalls(self)
        #: None: claim whatever the token's eventTypes allow (a "*" handler).
        self.commands = None if "*" in self.handlers else sorted(self.handlers)
        self._slots = anyio.Semaphore(concurrency)
        #: Threads for sync handlers: one per slot (the default pool has 40).
        self._threads = anyio.CapacityLimiter(concurrency)
        self._jobs: set[_Job] = set()
        self._idle = anyio.Event()
        self._idle.set()
        # Cancel scopes need a running loop: made by serve(); stop() before it is remembered.
        self._claiming: anyio.CancelScope | None = None
        self._grace: anyio.CancelScope | None = None
        self._stopping = False
        self._skip_grace = False
        self._fatal: CodeqError | None = None
        #: Counts for logs and tests: tasks completed, nacked, failed, abandoned, lost.
        self.stats: dict[str, int] = dict.fromkeys(
            ("complete", "nack", "fail", "abandon", "lost"), 0
        )

    def stop(self) -> None:
        """Stop claiming and drain (callable from async code of the same run)."""
        if self._stopping:
            self._skip_grace = True
            if self._grace is not None:
                self._grace.cancel()
            return
        self._stopping = True
        if self._claiming is not None:
            self._claiming.cancel()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`stop` (or a signal), then drain; raises a fatal error
        (401, 403, 400 on claim) after draining. Cancelling ``serve`` itself cancels
        handlers without the grace period and without abandoning their tasks
        (their leases expire)."""
        self._claiming, self._grace = anyio.CancelScope(), anyio.CancelScope()
        if self._stopping:
            self._claiming.cancel()
        if self._skip_grace:
            self._grace.cancel()
        async with anyio.create_task_group() as outer:
            if self.handle_signals:
                await outer.start(self._watch_signals)
            async with anyio.create_task_group() as jobs:
                log.info(
                    "worker.started commands=%s concurrency=%d lease=%ds",
                    ",".join(self.commands or ["*"]),
                    self.concurrency,
                    self.lease_seconds,
                )
                task_status.started()
                with self._claiming:
                    if self.transport == "http":
                        await self._claim_loop(jobs)
                    else:
                        await self._stream_loop(jobs, outer)
                self._stopping = True
                if self._stream is not None:  # no more pushes while draining
                    with anyio.move_on_after(REPORT_TIMEOUT, shield=True):
                        try:
                            await self._stream.ready(self.commands, 0, self.lease_seconds)
                        except CodeqError as e:
                            log.warning("worker.pause_failed %s", e)
                if self._jobs:
                    log.info(
                        "worker.draining in_flight=%d grace=%ss",
                        len(self._jobs),
                        self.grace_seconds,
                    )
                with self._grace, anyio.move_on_after(self.grace_seconds):
                    await self._idle.wait()
                for job in list(self._jobs):
                    job.scope.cancel()  # its handler returns Outcome('abandon')
            if self._stream is not None:  # the daemon hands back what it pushed meanwhile
                with anyio.CancelScope(shield=True):
                    await self._stream.aclose()
            outer.cancel_scope.cancel()
        log.info("worker.stopped %s", " ".join(f"{k}={v}" for k, v in self.stats.items()))
        if self._fatal is not None:
            raise self._fatal

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                log.info("worker.signal %s", signal.Signals(signum).name)
                self.stop()

    async def _claim_loop(self, jobs: TaskGroup) -> None:
        failures = 0
        while True:
            await self._slots.acquire()
            held = 1
            while held < self.concurrency and self._slots.value > 0:
                self._slots.acquire_nowait()
                held += 1
            try:
                try:
                    if held == 1:
                        task = await self.client.claim(
                            self.commands, lease_seconds=self.lease_seconds, wait=self.wait_seconds
                        )
                        tasks = [] if task is None else [task]
                    else:
                        tasks = await self.client.claim_many(
                            held,
                            self.commands,
                            lease_seconds=self.lease_seconds,
                            wait=self.wait_seconds,
                        )
                except FATAL as e:
                    log.error("worker.claim_refused %s", e)
                    self._fatal = e
                    return
                except RateLimited as e:
                    await anyio.sleep(e.retry_after)
                    continue
                except CodeqError as e:
                    # The daemon is restarting or unreachable: keep trying, calmly.
                    failures += 1
                    delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                    log.warning("worker.claim_failed %s (retrying in %.1fs)", e, delay)
                    await anyio.sleep(delay)
                    continue
                failures = 0
                for task in tasks:
                    held -= 1
                    self._start(jobs, task)
            finally:
                for _ in range(held):
                    self._slots.release()

    async def _stream_loop(self, jobs: TaskGroup, outer: TaskGroup) -> None:
        """Take the tasks the daemon pushes on the worker stream, reconnecting when it
        drops; falls back to :meth:`_claim_loop` when the daemon has no stream. The
        stream is read in ``outer``: it outlives this loop, for the reports of a drain."""
        failures = 0
        while True:
            if failures:
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                log.warning("worker.stream_retry in %.1fs", delay)
                await anyio.sleep(delay)
            try:
                stream = await WorkerStream.open(
                    self.client.base_url,
                    self.client._headers,
                    leases=self.client._leases,
                    buffer=self.concurrency,
                )
            except StreamUnsupported as e:
                if self.transport == "stream":
                    log.error("worker.stream_unsupported %s", e)
                    self._fatal = BadRequest(f"the daemon serves no worker stream: {e}")
                    return
                log.info("worker.transport http (the daemon serves no worker stream: %s)", e)
                self.using = "http"
                self._calls = self.client
                await self._claim_loop(jobs)
                return
            except CodeqError as e:
                log.warning("worker.stream_failed %s", e)
                failures += 1
                continue
            self._link_error = None
            outer.start_soon(self._read_stream, stream)
            try:
                await stream.ready(self.commands, self.concurrency, self.lease_seconds)
                self._stream = stream
                self.using = "stream"
                failures = 0
                log.info("worker.transport stream")
                async for task in stream.tasks:
                    await self._slots.acquire()
                    self._start(jobs, task)
            except CodeqError as e:
                self._link_error = self._link_error or e
            error = self._link_error
            if isinstance(error, FATAL):
                log.error("worker.stream_refused %s", error)
                self._fatal = error
                return
            log.warning("worker.stream_lost %s", error)
            self._stream = None
            await stream.aclose()
            failures += 1

    async def _read_stream(self, stream: WorkerStream) -> None:
        try:
            await stream.run()
        except CodeqError as e:
            self._link_error = e
        finally:
            if self._stream is stream:
                self._stream = None

    _link_error: CodeqError | None = None

    def _start(self, jobs: TaskGroup, task: Task) -> None:
        job = _Job(task)
        self._jobs.add(job)
        self._idle = anyio.Event()
        jobs.start_soon(self._execute, job, name=f"codeqd-task-{task.id}")

    async def _execute(self, job: _Job) -> None:
        """Run one task: handler and heartbeats side by side, then the report."""
        try:
            async with anyio.create_task_group() as nursery:
                nursery.start_soon(self._keep_alive, job)
                outcome = await self._invoke(job)
                nursery.cancel_scope.cancel()
            await self._report(job, outcome)
        finally:
            self._jobs.discard(job)
            if not self._jobs:
                self._idle.set()
            self._slots.release()

    async def _invoke(self, job: _Job) -> Outcome:
        task = job.task
        handler = self.handlers.get(task.command) or self.handlers.get("*")
        if handler is None:
            return Outcome("nack", reason=f"no handler for command {task.command!r}")
        with job.scope:
            try:
                value = await call_handler(handler, task, self._threads)
                return Outcome("complete", result=result_object(value))
            except Fail as e:
                return Outcome("fail", reason=reason_of(e))
            except Retry as e:
                return Outcome("nack", reason=str(e), delay=e.delay)
            except Exception as e:
                log.warning(
                    "worker.handler_failed task=%s command=%s attempt=%d: %s",
                    task.id,
                    task.command,
                    task.attempts,
                    reason_of(e, 500),
                )
                return Outcome("nack", reason=reason_of(e))
        return Outcome("abandon")

    async def _keep_alive(self, job: _Job) -> None:
        """Heartbeat every third of the lease; on a lost lease, cancel the handler."""
        interval = self.lease_seconds / 3
        while True:
            await anyio.sleep(interval)
            try:
                await self._calls.heartbeat(job.task, extend_seconds=self.lease_seconds)
            except (LeaseLost, NotFound) as e:
                log.warning("worker.lease_lost task=%s: %s", job.task.id, e)
                job.lost = True
                job.scope.cancel()
                return
            except CodeqError as e:
                # The lease outlives two missed beats; keep trying.
                log.warning("worker.heartbeat_failed task=%s: %s", job.task.id, e)

    async def _report(self, job: _Job, outcome: Outcome) -> None:
        """Tell the daemon; shielded (a stopping runner still reports) but bounded."""
        task = job.task
        if job.lost:
            self.stats["lost"] += 1
            return
        with anyio.move_on_after(REPORT_TIMEOUT, shield=True) as scope:
            try:
                if outcome.action == "complete":
                    await self._calls.complete(task, outcome.result)
                elif outcome.action == "fail":
                    await self._calls.fail(task, outcome.reason or "failed")
                elif outcome.action == "nack":
                    await self._calls.nack(task, outcome.reason, delay_seconds=outcome.delay)
                else:
                    await self._calls.abandon(task)
                self.stats[outcome.action] += 1
                log.info(
                    "worker.%s task=%s command=%s attempt=%d",
                    outcome.action,
                    task.id,
                    task.command,
                    task.attempts,
                )
            except LeaseLost as e:
                self.stats["lost"] += 1
                log.warning(
                    "worker.lease_lost task=%s (%s not applied): %s", task.id, outcome.action, e
                )
            except CodeqError as e:
                log.error(
                    "worker.report_failed task=%s action=%s: %s "
                    "(the task is retried when its lease expires)",
                    task.id,
                    outcome.action,
                    e,
                )
        if scope.cancelled_caught:
            log.error("worker.report_timeout task=%s action=%s", task.id, outcome.action)


async def run(
    handlers: Mapping[str, Handler],
    *,
    url: str | None = None,
    token: str | None = None,
    concurrency: int = 1,
    lease_seconds: int = 60,
    wait_seconds: int = 20,
    grace_seconds: float = 10.0,
    handle_signals: bool = True,
    shutdown: Waitable | None = None,
    client: AsyncWorkerClient | None = None,
    transport: Transport = "auto",
    task_status: TaskStatus[Runner] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handlers`` until SIGTERM/SIGINT (or ``shutdown`` is set), then drain.

    ``handlers`` maps a command to its handler; ``"*"`` is a catch-all and
    makes the runner claim every command the token's eventTypes allow.
    ``url``/``token`` default to ``$CODEQD_URL``/``$CODEQD_TOKEN``. Up to
    ``concurrency`` tasks run at once; each is leased for ``lease_seconds`` and
    heartbeated every third of that. Claims long-poll ``wait_seconds`` (≤ 30).

    ``transport``: ``"auto"`` (the default) takes tasks from the daemon's worker
    stream (one WebSocket: tasks are pushed, reports are messages) and falls back to
    HTTP long-polling when the daemon has none (the Go codeQ); ``"stream"`` insists on
    the stream, ``"http"`` always long-polls.

    Stopping: claiming stops at once; running handlers get ``grace_seconds``
    to finish (and are reported normally), then are cancelled and their tasks
    abandoned — requeued at once, no backoff. A second signal skips the grace.
    ``handle_signals=False`` leaves signals alone (e.g. when not on the main
    thread). With ``nursery.start(run, ...)``, the started value is the
    :class:`Runner` (``runner.stop()`` stops it).

    Raises the error when claiming is refused for good (401, 403, 400); keeps
    retrying, with backoff, while the daemon is unavailable or unreachable.
    ``shutdown`` is any event with ``async wait()`` (anyio, trio or asyncio).
    """
    own = client is None
    client = client or AsyncWorkerClient(url, token)
    runner = Runner(
        handlers,
        client,
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        wait_seconds=wait_seconds,
        grace_seconds=grace_seconds,
        handle_signals=handle_signals,
        transport=transport,
    )
    fatal: list[CodeqError] = []
    try:
        async with anyio.create_task_group() as nursery:

            async def serve(*, task_status: TaskStatus[None]) -> None:
                try:
                    await runner.serve(task_status=task_status)
                except CodeqError as e:
                    fatal.append(e)  # raised below, not wrapped in an ExceptionGroup
                finally:
                    nursery.cancel_scope.cancel()

            if shutdown is not None:

                async def stop_on_shutdown() -> None:
                    await shutdown.wait()
                    runner.stop()

                nursery.start_soon(stop_on_shutdown)
            await nursery.start(serve)
            task_status.started(runner)
    finally:
        if own:
            with anyio.CancelScope(shield=True):
                await client.aclose()
    if fatal:
        raise fatal[0]


def default_backend() -> str:
    """``"trio"`` when trio is installed (as with the daemon), else ``"asyncio"``."""
    return "trio" if importlib.util.find_spec("trio") is not None else "asyncio"


def run_sync(
    handlers: Mapping[str, Handler], *, backend: str | None = None, **options: Any
) -> None:
    """:func:`run` for code without an event loop: blocks until the worker stops.

    ``backend`` is anyio's: ``"trio"`` or ``"asyncio"``; by default trio when it
    is installed (async handlers written for trio keep working), else asyncio.
    """
    anyio.run(functools.partial(run, handlers, **options), backend=backend or default_backend())


__all__ = [
    "Fail",
    "Handler",
    "Outcome",
    "Retry",
    "Runner",
    "Transport",
    "Waitable",
    "default_backend",
    "run",
    "run_sync",
]
