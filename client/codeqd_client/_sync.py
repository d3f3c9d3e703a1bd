"""``Producer`` and ``WorkerClient``: the same calls as ``_async.py``, blocking.

Each method blocks the calling thread until the answer (or, for long-polls,
the wait) ends; retries sleep with ``time.sleep``. A ``KeyboardInterrupt``
abandons the request mid-flight with the same consequences as cancelling the
async method (see each method).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from codeqd_client import _calls as calls
from codeqd_client import _json
from codeqd_client._async import ITEM_ERRORS
from codeqd_client._calls import Call, Leases, RetryPolicy, RouteMissing
from codeqd_client._exceptions import CodeqError, LeaseLost, NotFound, ServerError, Unreachable
from codeqd_client._models import Artifact, NackOutcome, NewTask, Result, Task, TaskResult

T = TypeVar("T")


class _SyncClient:
    """What both roles share: the URL, the token, the retry loop, the connection pool."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | None = 10.0,
        retry: RetryPolicy | None = None,
        http: httpx.Client | None = None,
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
        self._http = http if http is not None else httpx.Client()

    def close(self) -> None:
        """Close the connection pool (if this client made it)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
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
                response = self._http.request(
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
            time.sleep(delay)


class Producer(_SyncClient):
    """Submit tasks and read their outcome, with a producer token (blocking calls).

    Semantics, retries and errors are those of :class:`AsyncProducer`.
    """

    def create(
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
        """Create one task (see :meth:`AsyncProducer.create` for retries)."""
        return self._send(
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

    def create_many(
        self,
        tasks: Iterable[NewTask | Mapping[str, Any]],
        *,
        batch_size: int = 100,
    ) -> list[Task | CodeqError]:
        """Create many tasks: a Task or the item's error per input, in order
        (see :meth:`AsyncProducer.create_many`)."""
        specs = [NewTask.coerce(t) for t in tasks]
        out: list[Task | CodeqError] = []
        for start in range(0, len(specs), max(1, batch_size)):
            chunk = specs[start : start + max(1, batch_size)]
            if self._batch_route is not False:
                try:
                    items = self._send(calls.create_batch(chunk, probe=self._batch_route is None))
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
                    created: Task = self._send(calls.create(spec))
                    out.append(created)
                except ITEM_ERRORS as e:
                    out.append(e)
        return out

    def get(self, task_id: str) -> Task:
        """The task now (NotFound also for another tenant's task)."""
        return self._send(calls.get(task_id))

    def result(self, task_id: str, *, wait: float = 0) -> TaskResult:
        """The task and, once terminal, its Result; blocks up to ``wait`` seconds for that."""
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            left = deadline - time.monotonic()
            asked = math.ceil(max(0.0, left))
            started = time.monotonic()
            answer = self._send(calls.result(task_id, asked))
            if answer is not None and (answer.done or left <= calls.MAX_WAIT_SECONDS):
                return answer
            now = time.monotonic()
            if answer is None and now >= deadline - 0.5:
                return TaskResult(task=self.get(task_id), result=None)
            if answer is None and now - started < min(asked, calls.MAX_WAIT_SECONDS) - 0.5:
                # Answered before the wait it was asked for: poll, do not spin.
                time.sleep(min(1.0, deadline - now))

    def cancel(self, task_id: str) -> Task:
        """Cancel a task that is not terminal yet (Conflict if it is)."""
        return self._send(calls.cancel(task_id))


class WorkerClient(_SyncClient):
    """Claim tasks and report on them, with a worker token (blocking calls).

    The leaseId of each claim is sent back automatically, as in
    :class:`AsyncWorkerClient`; a lost lease raises :class:`LeaseLost`.
    """

    def __init__(self, url: str | None = None, token: str | None = None, **kw: Any) -> None:
        super().__init__(url, token, **kw)
        self._leases = Leases()

    def claim(
        self,
        commands: Iterable[str] | None = None,
        *,
        lease_seconds: int | None = None,
        wait: float = 0,
    ) -> Task | None:
        """Lease the next task of ``commands``, blocking up to ``wait`` seconds for one."""
        commands = None if commands is None else list(commands)
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            left = deadline - time.monotonic()
            task = self._send(calls.claim(commands, lease_seconds, math.ceil(max(0.0, left))))
            if task is not None:
                return self._leases.remember(task)
            if left <= calls.MAX_WAIT_SECONDS:
                return None

    #: Whether the daemon serves the batch route: None until the first answer says.
    _batch_route: bool | None = None

    def claim_many(
        self,
        max_tasks: int,
        commands: Iterable[str] | None = None,
        *,
        lease_seconds: int | None = None,
        wait: float = 0,
    ) -> list[Task]:
        """Lease up to ``max_tasks`` tasks (see :meth:`AsyncWorkerClient.claim_many`)."""
        commands = None if commands is None else list(commands)
        if max_tasks < 1:
            raise ValueError("max_tasks must be at least 1")
        if self._batch_route is not False and max_tasks > 1:
            deadline = time.monotonic() + max(0.0, wait)
            while True:
                left = deadline - time.monotonic()
                try:
                    tasks = self._send(
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
        first = self.claim(commands, lease_seconds=lease_seconds, wait=wait)
        if first is None:
            return []
        out = [first]
        while len(out) < max_tasks:
            task = self.claim(commands, lease_seconds=lease_seconds)
            if task is None:
                break
            out.append(task)
        return out

    def get(self, task_id: str) -> Task:
        """The task now."""
        return self._send(calls.get(task_id))

    def heartbeat(self, task: Task | str, *, extend_seconds: int | None = None) -> datetime | None:
        """Extend the lease to now + ``extend_seconds``; returns the new ``leaseUntil``."""
        task_id, lease_id = self._leases.resolve(task)
        return self._send(calls.heartbeat(task_id, lease_id, extend_seconds))

    def _settle(self, task: Task | str, call: Call[T]) -> T:
        task_id = task.id if isinstance(task, Task) else task
        try:
            value = self._send(call)
        except (LeaseLost, NotFound):
            self._leases.forget(task_id)
            raise
        self._leases.forget(task_id)
        return value

    def nack(
        self, task: Task | str, reason: str | None = None, *, delay_seconds: int | None = None
    ) -> NackOutcome:
        """Give the task back for a retry (or dead-letter it when attempts are spent)."""
        task_id, lease_id = self._leases.resolve(task)
        return self._settle(task, calls.nack(task_id, lease_id, reason, delay_seconds))

    def abandon(self, task: Task | str) -> None:
        """Give the task back at once (for shutdown)."""
        task_id, lease_id = self._leases.resolve(task)
        self._settle(task, calls.abandon(task_id, lease_id))

    def complete(
        self,
        task: Task | str,
        result: Mapping[str, Any] | None = None,
        *,
        artifacts: Iterable[Artifact | Mapping[str, Any]] | None = None,
    ) -> Result:
        """Report success with ``result``; the task becomes COMPLETED."""
        task_id, lease_id = self._leases.resolve(task)
        return self._settle(
            task, calls.report(task_id, lease_id, "COMPLETED", result=result, artifacts=artifacts)
        )

    def fail(
        self,
        task: Task | str,
        error: str,
        *,
        result: Mapping[str, Any] | None = None,
        artifacts: Iterable[Artifact | Mapping[str, Any]] | None = None,
    ) -> Result:
        """Report a permanent failure: FAILED, never retried."""
        task_id, lease_id = self._leases.resolve(task)
        return self._settle(
            task,
            calls.report(
                task_id, lease_id, "FAILED", error=error, result=result, artifacts=artifacts
            ),
        )
