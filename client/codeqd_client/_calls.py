"""The API's calls without I/O: what to send, how to read the answer, whether to retry.

Each call of SPEC §2 is a function returning a :class:`Call`; the async and
sync clients (``_async.py``, ``_sync.py``) only send it and sleep between
tries, so both behave identically and this module is unit-tested without a
network.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx

from codeqd_client import _json
from codeqd_client._exceptions import (
    CodeqError,
    ServerError,
    error_from_item,
    error_from_response,
    parse_retry_after,
)
from codeqd_client._models import (
    Artifact,
    NackOutcome,
    NewTask,
    Result,
    Task,
    TaskResult,
    parse_time,
)
from codeqd_client._version import __version__

T = TypeVar("T")

#: The longest wait the daemon holds a request for (claim and result long-polls).
MAX_WAIT_SECONDS = 30
API_PREFIX = "/v1/codeq"
DEFAULT_URL = "http://127.0.0.1:8080"
USER_AGENT = f"codeqd-client/{__version__}"

Retry = Literal["always", "unsent"]


class RouteMissing(Exception):
    """An optional (extension) route is not served: the caller falls back."""


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how to read its answer.

    ``retry`` says when a failed try may be repeated: ``"always"`` for calls
    that are safe to repeat (reads, claims, heartbeats, creates with an
    idempotency key, and the lease holder's reports, which the leaseId fence
    lets apply at most once), ``"unsent"`` when only a request that provably
    never reached the daemon may be sent again (creates without a key).
    """

    method: str
    path: str
    parse: Callable[[int, Any], T]
    json: Any = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry: Retry = "always"
    #: A lease holder's call: a 409 means the task is no longer ours (LeaseLost).
    lease_call: bool = False
    #: Seconds the daemon may hold the request (added to the read timeout).
    wait: float = 0.0
    #: An extension route: a 404/405/501 raises RouteMissing instead of an error.
    optional_route: bool = False
    #: A 404 with this code means "nothing yet", not an error: ``parse(404, None)``.
    absent_code: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is repeated after a 503 or a network error.

    ``attempts`` counts tries (1 = never retry). Delays use full jitter over an
    exponential ramp from ``base`` up to ``cap`` seconds; a ``Retry-After``
    from the daemon is honoured as a minimum (also capped).
    """

    attempts: int = 4
    base: float = 0.2
    cap: float = 5.0

    def backoff(self, tries: int, retry_after: float | None = None) -> float:
        delay = random.uniform(0, min(self.cap, self.base * (2 ** (tries - 1))))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return delay


NO_RETRY = RetryPolicy(attempts=1)

#: Errors raised before the request could reach the daemon.
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def retry_delay(
    policy: RetryPolicy,
    call: Call[Any],
    tries: int,
    *,
    response: httpx.Response | None = None,
    error: Exception | None = None,
) -> float | None:
    """Seconds to wait before the next try of ``call``, or ``None`` to give up.

    ``tries`` is how many tries were made so far; pass the answer or the
    ``httpx`` error of the last one.
    """
    if tries >= policy.attempts:
        return None
    if error is not None:
        if isinstance(error, _UNSENT):
            return policy.backoff(tries)
        if isinstance(error, httpx.TransportError) and call.retry == "always":
            return policy.backoff(tries)
        return None
    if response is not None and response.status_code == 503 and call.retry == "always":
        return policy.backoff(tries, parse_retry_after(response.headers.get("retry-after")))
    return None


def _decode(content: bytes) -> Any:
    if not content.strip():
        return None
    try:
        return _json.loads(content)
    except ValueError:
        return None


def _is_absent(body: Any, code: str) -> bool:
    if not isinstance(body, Mapping):
        return False
    # codeQ's services before it named the code answered the message alone.
    return body.get("code") == code or (
        body.get("code") is None and body.get("error") == code.replace("_", " ")
    )


def interpret(call: Call[T], response: httpx.Response) -> T:
    """The value of a final answer, or the exception it stands for."""
    status = response.status_code
    body = _decode(response.content)
    if status == 404 and call.absent_code is not None and _is_absent(body, call.absent_code):
        return call.parse(status, None)
    if status >= 400:
        if (
            call.optional_route
            and status in (404, 405, 501)
            and (
                not isinstance(body, Mapping)
                or body.get("code") in (None, "route_not_found", "method_not_allowed")
            )
        ):
            raise RouteMissing(call.path)
        raise error_from_response(status, body, response.headers, lease_call=call.lease_call)
    try:
        return call.parse(status, body)
    except (ValueError, TypeError, KeyError) as e:
        raise ServerError(
            f"unexpected answer to {call.method} {call.path} ({status}): {e}",
            status=status,
            request_id=response.headers.get("x-request-id"),
        ) from e


def unreachable_message(call: Call[Any], error: Exception) -> str:
    detail = str(error) or type(error).__name__
    return f"{call.method} {call.path}: codeqd did not answer ({detail})"


# ------------------------------------------------------------------ configuration


def api_base(url: str | None) -> str:
    """The API root from a daemon URL: ``http://host:8080`` → ``http://host:8080/v1/codeq``.

    ``None`` means ``$CODEQD_URL``, else ``http://127.0.0.1:8080``.
    """
    url = (url or os.environ.get("CODEQD_URL") or DEFAULT_URL).rstrip("/")
    return url if url.endswith(API_PREFIX) else url + API_PREFIX


def auth_headers(token: str | None) -> dict[str, str]:
    """Headers every call carries; ``None`` means ``$CODEQD_TOKEN``."""
    token = token if token is not None else os.environ.get("CODEQD_TOKEN")
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def timeout_for(timeout: float | None, call: Call[Any]) -> httpx.Timeout:
    if timeout is None:
        return httpx.Timeout(None)
    return httpx.Timeout(timeout, read=timeout + call.wait)


# ------------------------------------------------------------------ leases


class Leases:
    """The leaseIds of tasks this worker claimed, so calls by task id are fenced too.

    Bounded: the oldest entries go first once ``limit`` tasks were claimed and
    never reported (their calls then go unfenced, checked by ``sub`` alone).
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._ids: dict[str, str] = {}
        self._limit = limit

    def remember(self, task: Task) -> Task:
        if task.lease_id:
            self._ids.pop(task.id, None)
            self._ids[task.id] = task.lease_id
            while len(self._ids) > self._limit:
                del self._ids[next(iter(self._ids))]
        return task

    def resolve(self, task: Task | str) -> tuple[str, str | None]:
        """(task id, leaseId) for a claimed Task or a task id."""
        if isinstance(task, Task):
            return task.id, task.lease_id or self._ids.get(task.id)
        return task, self._ids.get(task)

    def forget(self, task_id: str) -> None:
        self._ids.pop(task_id, None)


# ------------------------------------------------------------------ producer calls


def _task_path(task_id: str, suffix: str = "") -> str:
    if not task_id:
        raise ValueError("task id must not be empty")
    return f"/tasks/{quote(task_id, safe='')}{suffix}"


def _task(status: int, body: Any) -> Task:
    return Task.from_wire(body)


def create(spec: NewTask) -> Call[Task]:
    return Call(
        "POST",
        "/tasks",
        _task,
        json=spec.to_wire(),
        retry="always" if spec.idempotency_key else "unsent",
    )


def _items(status: int, body: Any) -> list[Task | CodeqError]:
    out: list[Task | CodeqError] = []
    for item in body["tasks"]:
        if isinstance(item, Mapping) and "id" in item and "command" in item:
            out.append(Task.from_wire(item))
        elif isinstance(item, Mapping):
            nested = item.get("error")
            out.append(error_from_item(nested if isinstance(nested, Mapping) else item))
        else:
            raise ValueError("a batch item is neither a task nor an error")
    return out


#: Sent while an extension route is not known to exist. codeqd (hypercorn) can
#: leave a kept-alive connection hanging after a 404/405 to a request with a
#: body; a connection that closes after the answer cannot be reused that way.
PROBE_HEADERS = {"Connection": "close"}


def create_batch(specs: Sequence[NewTask], *, probe: bool = False) -> Call[list[Task | CodeqError]]:
    keyed = all(s.idempotency_key for s in specs)
    return Call(
        "POST",
        "/tasks/batch",
        _items,
        json={"tasks": [s.to_wire() for s in specs]},
        headers=PROBE_HEADERS if probe else {},
        retry="always" if keyed else "unsent",
        optional_route=True,
    )


def get(task_id: str) -> Call[Task]:
    return Call("GET", _task_path(task_id), _task)


def result(task_id: str, wait: int) -> Call[TaskResult | None]:
    """The task and its Result; None while it has none (404 ``result_not_found``,
    codeQ's answer: at once, or once the wait ran out)."""
    wait = max(0, min(MAX_WAIT_SECONDS, wait))
    return Call(
        "GET",
        _task_path(task_id, "/result"),
        lambda status, body: None if body is None else TaskResult.from_wire(body),
        params={"waitSeconds": str(wait)} if wait else None,
        wait=wait,
        absent_code="result_not_found",
    )


def cancel(task_id: str) -> Call[Task]:
    return Call("DELETE", _task_path(task_id), _task)


# ------------------------------------------------------------------ worker calls


def _claim_body(
    commands: Iterable[str] | None, lease_seconds: int | None, wait: int
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if commands is not None:
        body["commands"] = list(commands)
    if lease_seconds is not None:
        body["leaseSeconds"] = lease_seconds
    if wait:
        body["waitSeconds"] = wait
    return body


def claim(
    commands: Iterable[str] | None, lease_seconds: int | None, wait: int
) -> Call[Task | None]:
    wait = max(0, min(MAX_WAIT_SECONDS, wait))
    return Call(
        "POST",
        "/tasks/claim",
        lambda status, body: None if status == 204 else Task.from_wire(body),
        json=_claim_body(commands, lease_seconds, wait),
        wait=wait,
    )


def claim_batch(
    max_tasks: int,
    commands: Iterable[str] | None,
    lease_seconds: int | None,
    wait: int,
    *,
    probe: bool = False,
) -> Call[list[Task]]:
    wait = max(0, min(MAX_WAIT_SECONDS, wait))
    body = {**_claim_body(commands, lease_seconds, wait), "maxTasks": max_tasks}
    return Call(
        "POST",
        "/tasks/claim/batch",
        lambda status, b: [] if status == 204 else [Task.from_wire(t) for t in b["tasks"]],
        json=body,
        headers=PROBE_HEADERS if probe else {},
        wait=wait,
        optional_route=True,
    )


def _fenced(body: dict[str, Any], lease_id: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The leaseId goes in both places the daemon reads it (body wins over the header)."""
    if not lease_id:
        return body, {}
    return {**body, "leaseId": lease_id}, {"X-Lease-Id": lease_id}


def heartbeat(
    task_id: str, lease_id: str | None, extend_seconds: int | None
) -> Call[datetime | None]:
    body, headers = _fenced(
        {} if extend_seconds is None else {"extendSeconds": extend_seconds}, lease_id
    )
    return Call(
        "POST",
        _task_path(task_id, "/heartbeat"),
        lambda status, b: parse_time(b.get("leaseUntil")) if isinstance(b, Mapping) else None,
        json=body,
        headers=headers,
        lease_call=True,
    )


def nack(
    task_id: str, lease_id: str | None, reason: str | None, delay_seconds: int | None
) -> Call[NackOutcome]:
    raw: dict[str, Any] = {}
    if reason is not None:
        raw["reason"] = reason[-4096:]
    if delay_seconds is not None:
        raw["delaySeconds"] = delay_seconds
    body, headers = _fenced(raw, lease_id)
    return Call(
        "POST",
        _task_path(task_id, "/nack"),
        lambda status, b: NackOutcome.from_wire(b),
        json=body,
        headers=headers,
        lease_call=True,
    )


def abandon(task_id: str, lease_id: str | None) -> Call[None]:
    body, headers = _fenced({}, lease_id)
    return Call(
        "POST",
        _task_path(task_id, "/abandon"),
        lambda status, b: None,
        json=body,
        headers=headers,
        lease_call=True,
    )


def report(
    task_id: str,
    lease_id: str | None,
    status: Literal["COMPLETED", "FAILED"],
    *,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
    artifacts: Iterable[Artifact | Mapping[str, Any]] | None = None,
) -> Call[Result]:
    raw: dict[str, Any] = {"status": status}
    if status == "COMPLETED":
        raw["result"] = dict(result or {})
    else:
        raw["error"] = (error or "failed")[-4096:]
        if result is not None:
            raw["result"] = dict(result)
    if artifacts is not None:
        raw["artifacts"] = [a.to_wire() if isinstance(a, Artifact) else dict(a) for a in artifacts]
    body, headers = _fenced(raw, lease_id)
    return Call(
        "POST",
        _task_path(task_id, "/result"),
        lambda code, b: Result.from_wire(b),
        json=body,
        headers=headers,
        lease_call=True,
    )
