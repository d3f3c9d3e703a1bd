"""``AsyncProducer`` and ``AsyncWorkerClient``: the API from trio or asyncio (via anyio).

Cancellation: every method may be cancelled at any ``await``; the request is
then abandoned mid-flight and the daemon may or may not have applied it. Each
method says what that means for it. Retries sleep with ``anyio.sleep``, so they
are cancelled like any other wait.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import httpx

from codeqd_client import _calls as calls
from codeqd_client import _json
from codeqd_client._calls import Call, Leases, RetryPolicy, RouteMissing
from codeqd_client._exceptions import (
    BadRequest,
    CodeqError,
    Conflict,
    LeaseLost,
    NotFound,
    ServerError,
    Unreachable,
)
from codeqd_client._models import (
    Artifact,
    NackOutcome,
    NewTask,
    Result,
    Task,
    TaskResult,
)

T = TypeVar("T")

#: Per-item errors that ``create_many`` reports in place instead of raising.
ITEM_ERRORS = (BadRequest, Conflict, NotFound)


class _AsyncClient:
    """What both roles share: the URL, the token, the retry loop, the connection pool."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | None = 10.0,
        retry: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """``url`` and ``token`` default to ``$CODEQD_URL`` and ``$CODEQD_TOKEN``.

        ``timeout`` bounds connecting and each read; long-polls add their wait
        to it. Pass ``http`` to share a pool (it is then not closed by us).
        """
        self.base_url = calls.api_base(url)
        self._headers = {**calls.auth_headers(token), **(headers or {})}
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()

    async def aclose(self) -> None:
        """Close the connection pool (if this client made it)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        """Send ``call``, retrying per its policy; the value of the final answer."""
        headers = {**self._headers, **call.headers}
        content = None
        if call.json is not None:
            content = _json.dumps(call.json)
            headers["Content-Type"] = "application/json"
        url = self.base_url + call.path
        tries = 0
        while True:
            tries += 1
            try:
                response = await self._http.request(
                    call.method,
                    url,
                    content=content,
                    params=call.params,
                    headers=headers,
                    timeout=calls.timeout_for(self._timeout, call),
                )
            except httpx.TransportError as e:
                delay = calls.retry_delay(self._retry, call, tries, error=e)
                if delay is None:
                    raise Unreachable(calls.unreachable_message(call, e)) from e
            else:
                delay = calls.retry_delay(self._retry, call, tries, response=response)
                if delay is None:
                    return calls.interpret(call, response)
            await anyio.sleep(delay)


class AsyncProducer(_AsyncClient):
    """Submit tasks and read their outcome, with a producer token."""

    async def create(
        self,
        command: str,
        payload: Any = None,
        *,
        priority: int | None = None,
        max_attempts: int | None = None,
        webhook: str | None = None,
        idempotency_key: str | None = None,
        run_at: datetime | str | None = None,
        delay: float | timedelta | None = None,
    ) -> Task:
        """Create one task; returns it as stored (``status`` PENDING).

        With an ``idempotency_key`` the call is retried on 503 and network
        errors, and a repeat returns the first task. Without one it is retried
        only when the request provably never left, since a repeat could create
        a duplicate. If cancelled, the task may or may not exist; only a key
        makes it safe to just call again.
        """
        return await self._send(
            calls.create(
                NewTask(
                    command=command,
                    payload={} if payload is None else payload,
                    priority=priority,
                    max_attempts=max_attempts,
                    webhook=webhook,
                    idempotency_key=idempotency_key,
                    run_at=run_at,
                    delay=delay,
                )
            )
        )

    #: Whether the daemon serves the batch route: None until the first answer says.
    _batch_route: bool | None = None

    async def create_many(
        self,
        tasks: Iterable[NewTask | Mapping[str, Any]],
        *,
        batch_size: int = 100,
    ) -> list[Task | CodeqError]:
        """Create many tasks: a Task or the item's error per input, in order.

        Sent ``batch_size`` at a time to ``POST /tasks/batch``; a daemon without
        that route (the Go service, older codeqd) gets one create per task, and
        this client remembers not to ask again. Per-item refusals (400, 404,
        409) are returned in place; anything that would fail every item (401,
        403, 429, 503, no answer) is raised. If cancelled, a prefix of the
        tasks may exist: use idempotency keys to resume safely.
        """
        specs = [NewTask.coerce(t) for t in tasks]
        out: list[Task | CodeqError] = []
        for start in range(0, len(specs), max(1, batch_size)):
            chunk = specs[start : start + max(1, batch_size)]
            if self._batch_route is not False:
                try:
                    items = await self._send(
                        calls.create_batch(chunk, probe=self._batch_route is None)
                    )
                except RouteMissing:
                    self._batch_route = False
                else:
                    self._batch_route = True
                    if len(items) != len(chunk):
                        raise ServerError(
                            f"batch create answered {len(items)} items for {len(chunk)} tasks"
                        )
                    out.extend(items)
                    continue
            for spec in chunk:
                try:
                    created: Task = await self._send(calls.create(spec))
                    out.append(created)
                except ITEM_ERRORS as e:
                    out.append(e)
        return out

    async def get(self, task_id: str) -> Task:
        """The task now (NotFound also for another tenant's task). Safe to cancel."""
        return await self._send(calls.get(task_id))

    async def result(self, task_id: str, *, wait: float = 0) -> TaskResult:
        """The task and, once terminal, its Result; waits up to ``wait`` seconds for that.

        The daemon holds each request up to 30 s and answers as soon as the
        task is terminal (404 ``result_not_found`` while there is no result), so
        longer waits are several long-polls; ``result`` is ``None`` if the wait
        ends first (the task is then read as it is). Safe to cancel (a read).
        """
        deadline = anyio.current_time() + max(0.0, wait)
        while True:
            left = deadline - anyio.current_time()
            asked = math.ceil(max(0.0, left))
            started = anyio.current_time()
            answer = await self._send(calls.result(task_id, asked))
            if answer is not None and (answer.done or left <= calls.MAX_WAIT_SECONDS):
                return answer
            now = anyio.current_time()
            if answer is None and now >= deadline - 0.5:
                return TaskResult(task=await self.get(task_id), result=None)
            if answer is None and now - started < min(asked, calls.MAX_WAIT_SECONDS) - 0.5:
                # Answered before the wait it was asked for (a daemon that does not
                # long-poll, or one shutting down): poll, do not spin.
                await anyio.sleep(min(1.0, deadline - now))

    async def cancel(self, task_id: str) -> Task:
        """Cancel a task that is not terminal yet; returns it CANCELLED.

        Raises :class:`Conflict` when the task is already terminal — also when a
        retried cancel finds its own first try landed. A worker holding the
        task learns of it at its next call (:class:`LeaseLost`). If cancelled
        in flight, the task may or may not be cancelled: call again.
        """
        return await self._send(calls.cancel(task_id))


class AsyncWorkerClient(_AsyncClient):
    """Claim tasks and report on them, with a worker token.

    Tasks are fenced: the ``leaseId`` of each claim is sent back (body and
    ``X-Lease-Id``) on every call about that task, whether you pass the
    claimed :class:`Task` or its id, so a worker that lost its lease cannot
    overwrite the work of the next holder; such calls raise :class:`LeaseLost`.
    """

    def __init__(self, url: str | None = None, token: str | None = None, **kw: Any) -> None:
        super().__init__(url, token, **kw)
        self._leases = Leases()

    async def claim(
        self,
        commands: Iterable[str] | None = None,
        *,
        lease_seconds: int | None = None,
        wait: float = 0,
    ) -> Task | None:
        """Lease the next task of ``commands`` (default: the token's eventTypes), or None.

        Waits up to ``wait`` seconds for one (the daemon wakes the request the
        moment a task is ready). If cancelled while the request is in flight,
        the daemon may have leased a task whose answer is lost: it is retried
        after ``lease_seconds`` like any task whose worker vanished.
        """
        commands = None if commands is None else list(commands)
        deadline = anyio.current_time() + max(0.0, wait)
        while True:
            left = deadline - anyio.current_time()
            task = await self._send(calls.claim(commands, lease_seconds, math.ceil(max(0.0, left))))
            if task is not None:
                return self._leases.remember(task)
            if left <= calls.MAX_WAIT_SECONDS:
                return None

    #: Whether the daemon serves the batch route: None until the first answer says.
    _batch_route: bool | None = None

    async def claim_many(
        self,
        max_tasks: int,
        commands: Iterable[str] | None = None,
        *,
        lease_seconds: int | None = None,
        wait: float = 0,
    ) -> list[Task]:
        """Lease up to ``max_tasks`` tasks (at least one unless ``wait`` ends first).

        Uses ``POST /tasks/claim/batch``; without that route, one waiting claim
        and then non-waiting ones until ``max_tasks`` or the queue is empty.
        Cancellation as for :meth:`claim`.
        """
        commands = None if commands is None else list(commands)
        if max_tasks < 1:
            raise ValueError("max_tasks must be at least 1")
        if self._batch_route is not False and max_tasks > 1:
            deadline = anyio.current_time() + max(0.0, wait)
            while True:
                left = deadline - anyio.current_time()
                try:
                    tasks = await self._send(
                        calls.claim_batch(
                            max_tasks,
                            commands,
                            lease_seconds,
                            math.ceil(max(0.0, left)),
                            probe=self._batch_route is None,
                        )
                    )
                except RouteMissing:
                    self._batch_route = False
                    break
                self._batch_route = True
                if tasks or left <= calls.MAX_WAIT_SECONDS:
                    return [self._leases.remember(t) for t in tasks]
        first = await self.claim(commands, lease_seconds=lease_seconds, wait=wait)
        if first is None:
            return []
        out = [first]
        while len(out) < max_tasks:
            task = await self.claim(commands, lease_seconds=lease_seconds)
            if task is None:
                break
            out.append(task)
        return out

    async def get(self, task_id: str) -> Task:
        """The task now. Safe to cancel (a read)."""
        return await self._send(calls.get(task_id))

    async def heartbeat(
        self, task: Task | str, *, extend_seconds: int | None = None
    ) -> datetime | None:
        """Extend the lease to now + ``extend_seconds`` (default: the daemon's, 300 s).

        Returns the new ``leaseUntil``. Raises :class:`LeaseLost` when the task
        is no longer ours. Safe to repeat and to cancel (the lease then simply
        is not extended).
        """
        task_id, lease_id = self._leases.resolve(task)
        return await self._send(calls.heartbeat(task_id, lease_id, extend_seconds))

    async def _settle(self, task: Task | str, call: Call[T]) -> T:
        """Send a call that ends our lease; forget the lease once it is surely gone."""
        task_id = task.id if isinstance(task, Task) else task
        try:
            value = await self._send(call)
        except (LeaseLost, NotFound):
            self._leases.forget(task_id)
            raise
        self._leases.forget(task_id)
        return value

    async def nack(
        self, task: Task | str, reason: str | None = None, *, delay_seconds: int | None = None
    ) -> NackOutcome:
        """Give the task back for a retry after ``delay_seconds`` (default: the backoff).

        Dead-letters it instead when its attempts are spent. If cancelled in
        flight the nack may or may not have landed; either way the task is
        retried (at the latest when the lease expires).
        """
        task_id, lease_id = self._leases.resolve(task)
        return await self._settle(task, calls.nack(task_id, lease_id, reason, delay_seconds))

    async def abandon(self, task: Task | str) -> None:
        """Give the task back at once, for shutdown: no backoff, no penalty beyond the claim.

        Cancellation as for :meth:`nack`.
        """
        task_id, lease_id = self._leases.resolve(task)
        await self._settle(task, calls.abandon(task_id, lease_id))

    async def complete(
        self,
        task: Task | str,
        result: Mapping[str, Any] | None = None,
        *,
        artifacts: Iterable[Artifact | Mapping[str, Any]] | None = None,
    ) -> Result:
        """Report success with ``result`` (a JSON object); the task becomes COMPLETED.

        Retried on 503 and network errors: the leaseId fence lets only one
        report land, so a repeat after a lost answer raises :class:`LeaseLost`
        although the first one counted. If cancelled, the report may or may
        not have landed; without it the task is retried after its lease.
        """
        task_id, lease_id = self._leases.resolve(task)
        return await self._settle(
            task, calls.report(task_id, lease_id, "COMPLETED", result=result, artifacts=artifacts)
        )

    async def fail(
        self,
        task: Task | str,
        error: str,
        *,
        result: Mapping[str, Any] | None = None,
        artifacts: Iterable[Artifact | Mapping[str, Any]] | None = None,
    ) -> Result:
        """Report a permanent failure: FAILED, never retried (use :meth:`nack` to retry).

        Retries and cancellation as for :meth:`complete`.
        """
        task_id, lease_id = self._leases.resolve(task)
        return await self._settle(
            task,
            calls.report(
                task_id, lease_id, "FAILED", error=error, result=result, artifacts=artifacts
            ),
        )
