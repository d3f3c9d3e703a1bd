"""The accounting workload: producers and real workers, every outcome recorded.

``Workload.run`` creates tasks with known idempotency keys and payloads and
runs workers that claim (with a lease id), heartbeat, and then — as each
task's plan says for that attempt — complete, fail, nack, abandon or "die"
(stop heartbeating and walk away). Every call is retried across connection
errors, daemon restarts and 503s until ``call_deadline``; each attempt is
recorded (endpoint, status, latency). ``reconcile`` then checks the store's
final word against that history (see ``Workload.reconcile`` for the exact
rules and what a lost response is allowed to explain).

Workers take their tasks one of two ways (``Settings.transport``): HTTP claim
(``"http"``), or a worker stream (``"stream"``, SPEC §6) that the daemon pushes
up to ``max_in_flight`` tasks on, with heartbeats, results, nacks and abandons
sent as messages on it. A stream that dies is reopened (as the worker runner
does), and a message it left unanswered is sent again on the next one. Either
way each task the worker got (claimed or pushed) is a ``Claim`` and each answer
to its calls lands in the same ledger, so the reconciliation is the same.

Used by the fault tests (``tests/faults``) and the soak (``tests/bench/soak.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import trio

from codeqd_client import CodeqError
from codeqd_client._stream import WorkerStream

ACTIONS = ("complete", "slow", "fail", "nack", "abandon", "die")
WEIGHTS = (50, 10, 8, 14, 8, 10)
#: Transport errors raised before the request could reach the server: not ambiguous.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def lease_refused(status: int, doc: dict[str, Any]) -> bool:
    """The answer to a worker whose lease is gone: 409 (lost, expired, terminal), or 403
    ``not_lease_holder`` once another worker holds the task (codeQ's answer). ``doc`` is
    the HTTP error body, or the stream's ``error`` message (the same fields)."""
    if status == 409:
        return True
    return status == 403 and doc.get("code") == "not_lease_holder"


def body_of(r: httpx.Response) -> dict[str, Any]:
    try:
        doc = r.json()
    except ValueError:
        return {"text": r.text[:200]}
    return doc if isinstance(doc, dict) else {"json": doc}


#: A lease holder's call (kind: heartbeat, result, nack, abandon; the task id; the
#: body) over one transport: (status, the answer's body or error, how many earlier
#: attempts may have been applied without an answer).
Op = Callable[[str, str, dict[str, Any]], Awaitable[tuple[int, dict[str, Any], int]]]


@dataclass
class Settings:
    tasks: int = 150
    workers: int = 8
    command: str = "acct"
    rate: float | None = None  # creates per second; None: as fast as the producers go
    producers: int = 2
    lease_seconds: int = 2
    max_attempts: int = 3
    work_seconds: float = 0.05  # mean simulated work per attempt
    call_deadline: float = 60.0  # one logical call may retry this long, then the run fails
    request_timeout: float = 10.0  # per HTTP attempt (above store.command_timeout)
    seed: int = 1
    transport: str = "http"  # how workers get tasks: "http" (claim) or "stream" (pushed)
    max_in_flight: int = 1  # a stream worker's maxInFlight (HTTP workers hold one task)
    run_id: str = field(default_factory=lambda: f"r{random.randrange(1 << 30):x}")


@dataclass
class Claim:
    task_id: str
    worker: str
    lease_id: str
    attempts: int
    at: int  # server time of the claim (the task's updatedAt)
    lease_until: int  # last known lease end (claim, then every acknowledged heartbeat)
    released_at: int | None = None  # wall time a nack/abandon/result for it was first sent
    refused: bool = False  # a heartbeat found the lease lost


@dataclass
class Report:
    result: dict[str, Any] | None  # what the worker sent
    error: str | None
    lease_id: str
    worker: str
    status: str
    certain: bool  # False: the response was lost and a retry found it already applied


class _Link:
    """A stream worker's open stream (None while it reconnects), shared by its tasks."""

    def __init__(self) -> None:
        self.stream: WorkerStream | None = None
        self.jobs = 0  # pushed tasks still being worked or reported
        self.changed = trio.Event()

    def set(self, stream: WorkerStream | None) -> None:
        self.stream = stream
        self.poke()

    def poke(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class CallFailed(Exception):
    """A call still failing after ``call_deadline``: the run cannot be reconciled."""


@dataclass
class Reconciliation:
    created: int
    completed: int
    failed: int
    dead_lettered: int
    lost: list[str]
    stranded: list[str]
    violations: list[str]
    claims_seen: int
    attempts_total: int
    ambiguous_claims: int

    @property
    def ok(self) -> bool:
        return not (self.lost or self.stranded or self.violations)

    def summary(self) -> str:
        return (
            f"created={self.created} completed={self.completed} failed={self.failed} "
            f"dead_lettered={self.dead_lettered} lost={len(self.lost)} "
            f"stranded={len(self.stranded)} violations={len(self.violations)} "
            f"claims_seen={self.claims_seen} attempts={self.attempts_total} "
            f"ambiguous_claims={self.ambiguous_claims}"
        )


class Workload:
    def __init__(self, base: str, mint: Callable[[str, str], str], settings: Settings) -> None:
        """``mint(role, sub)`` returns a bearer token for the daemon at ``base``."""
        self.base = base.rstrip("/")
        self.s = settings
        self.producer = mint("producer", "acct-producer")
        self.admin = mint("admin", "acct-admin")
        self.worker_tokens = [mint("worker", f"acct-w{i}") for i in range(settings.workers)]
        self.created: dict[str, str] = {}  # idempotency key -> task id (acknowledged)
        self.keys: dict[str, str] = {}  # task id -> key
        self.claims: dict[str, list[Claim]] = defaultdict(list)
        self.reports: dict[str, list[Report]] = defaultdict(list)
        self.refused_reports: list[tuple[str, str, int]] = []  # (task, lease, status)
        self.dead_by_nack: set[str] = set()
        self.ambiguous_claims = 0
        self.statuses: Counter[tuple[str, int]] = Counter()  # (endpoint, status or 0)
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.unexpected: list[str] = []  # 5xx other than 503, and 4xx nobody expects
        self.transport_errors: Counter[str] = Counter()
        #: (endpoint, started wall ms, ended wall ms, status or exception name, request id)
        self.timeline: list[tuple[str, int, int, str, str]] = []
        self._requests = 0
        self.finished = trio.Event()
        self.producers_done = trio.Event()
        self.terminal_seen = 0  # results and dead-letterings the workers saw
        self.in_flight = 0  # requests sent and not yet answered
        self._progress: list[tuple[Callable[[], bool], trio.Event]] = []

    # ------------------------------------------------------------ http

    async def call(
        self,
        http: httpx.AsyncClient,
        endpoint: str,
        method: str,
        path: str,
        token: str,
        body: Any = None,
        *,
        timeout: float | None = None,
    ) -> tuple[httpx.Response, int]:
        """One logical call: retried on transport errors and 503 until the deadline.

        Returns (response, ambiguous): how many earlier attempts may have been
        applied (sent, but no definite answer came back: a reset connection, a
        timeout, or a 503, which a script that ran but overran the store timeout
        also gives).
        """
        deadline = trio.current_time() + self.s.call_deadline
        ambiguous = 0
        delay = 0.05
        while True:
            started = time.perf_counter()
            t0 = wall_ms()
            self._requests += 1
            rid = f"wl-{self._requests}"  # X-Request-Id: the daemon logs it if it read the request
            self.in_flight += 1
            self._check_progress()
            try:
                try:
                    r = await http.request(
                        method,
                        f"{self.base}/v1/codeq{path}",
                        json=body,
                        headers={"Authorization": f"Bearer {token}", "X-Request-Id": rid},
                        timeout=timeout or self.s.request_timeout,
                    )
                finally:
                    self.in_flight -= 1
            except httpx.TransportError as e:
                self.transport_errors[type(e).__name__] += 1
                self.statuses[(endpoint, 0)] += 1
                self.timeline.append((endpoint, t0, wall_ms(), type(e).__name__, rid))
                ambiguous += not isinstance(e, NOT_SENT)
            else:
                self.latencies[endpoint].append(time.perf_counter() - started)
                self.statuses[(endpoint, r.status_code)] += 1
                self.timeline.append((endpoint, t0, wall_ms(), str(r.status_code), rid))
                if r.status_code >= 500 and r.status_code != 503:
                    self.unexpected.append(f"{endpoint} {path}: {r.status_code} {r.text[:200]}")
                if r.status_code not in (503, 500, 502, 504):
                    return r, ambiguous
                ambiguous += 1
            if trio.current_time() + delay > deadline:
                raise CallFailed(f"{endpoint} {path}: no answer within {self.s.call_deadline}s")
            await trio.sleep(delay)  # back-off between retries of a failing call
            delay = min(delay * 2, 0.5)

    # ------------------------------------------------------------ producers

    def plan(self, index: int) -> list[str]:
        rng = random.Random(self.s.seed * 1_000_003 + index)
        return rng.choices(ACTIONS, WEIGHTS, k=self.s.max_attempts + 2)

    async def _produce(self, http: httpx.AsyncClient, indexes: range | list[int]) -> None:
        start = trio.current_time()
        for n, i in enumerate(indexes):
            if self.s.rate:
                await trio.sleep_until(start + n * self.s.producers / self.s.rate)
            key = f"{self.s.run_id}-{i}"
            payload = {"i": i, "key": key, "plan": self.plan(i)}
            r, _ = await self.call(
                http,
                "create",
                "POST",
                "/tasks",
                self.producer,
                {
                    "command": self.s.command,
                    "payload": payload,
                    "idempotencyKey": key,
                    "maxAttempts": self.s.max_attempts,
                },
            )
            if r.status_code != 202:
                self.unexpected.append(f"create {key}: {r.status_code} {r.text[:200]}")
                continue
            task = r.json()
            if task["payload"] != payload or task.get("idempotencyKey") != key:
                self.unexpected.append(f"create {key}: echoed {task}")
            if key in self.created and self.created[key] != task["id"]:
                self.unexpected.append(f"create {key}: two ids {self.created[key]} {task['id']}")
            self.created[key] = task["id"]
            self.keys[task["id"]] = key
            self._check_progress()

    # ------------------------------------------------------------ workers

    def _http_op(self, http: httpx.AsyncClient, token: str) -> Op:
        async def op(
            kind: str, task_id: str, body: dict[str, Any]
        ) -> tuple[int, dict[str, Any], int]:
            r, ambiguous = await self.call(
                http, kind, "POST", f"/tasks/{task_id}/{kind}", token, body
            )
            return r.status_code, body_of(r), ambiguous

        return op

    async def _worker(self, http: httpx.AsyncClient, n: int) -> None:
        token = self.worker_tokens[n]
        sub = f"acct-w{n}"
        rng = random.Random(self.s.seed * 7919 + n)
        op = self._http_op(http, token)
        while not self.finished.is_set():
            r, ambiguous = await self.call(
                http,
                "claim",
                "POST",
                "/tasks/claim",
                token,
                {
                    "commands": [self.s.command],
                    "leaseSeconds": self.s.lease_seconds,
                    "waitSeconds": 1,
                },
                timeout=self.s.request_timeout + 1,
            )
            self.ambiguous_claims += ambiguous
            if r.status_code == 204:
                continue
            if r.status_code != 200:
                self.unexpected.append(f"claim: {r.status_code} {r.text[:200]}")
                continue
            claim, action = self._claimed(r.json(), sub)
            await self._act(op, claim, action, rng)

    def _claimed(self, task: dict[str, Any], worker: str) -> tuple[Claim, str]:
        """Record a task claimed or pushed to ``worker``; returns its claim and the plan's
        action for this attempt."""
        claim = Claim(
            task["id"],
            worker,
            task["leaseId"],
            task["attempts"],
            ms(task["updatedAt"]),
            ms(task["leaseUntil"]),
        )
        self.claims[task["id"]].append(claim)
        plan = task["payload"]["plan"]
        action = plan[task["attempts"] - 1] if task["attempts"] <= len(plan) else "complete"
        return claim, action

    async def _act(self, op: Op, c: Claim, action: str, rng: random.Random) -> None:
        if action == "die":
            return  # no heartbeat, no report: the reaper must take the task back
        work = rng.expovariate(1 / self.s.work_seconds)
        if action == "slow":
            work = self.s.lease_seconds * 1.5  # outlives the lease: heartbeats keep it
        lost = await self._work(op, c, work)
        if action in ("complete", "slow", "fail"):
            status = "FAILED" if action == "fail" else "COMPLETED"
            body: dict[str, Any] = {"status": status, "leaseId": c.lease_id}
            if status == "COMPLETED":
                body["result"] = {"lease": c.lease_id, "worker": c.worker}
            else:
                body["error"] = f"failed by {c.worker} on {c.lease_id}"
            c.released_at = wall_ms()
            code, doc, ambiguous = await op("result", c.task_id, body)
            if code == 200:
                self.reports[c.task_id].append(
                    Report(
                        body.get("result"), body.get("error"), c.lease_id, c.worker, status, True
                    )
                )
                self._terminal()
                if lost:
                    self.unexpected.append(f"result {c.task_id} accepted after lease was lost")
            elif lease_refused(code, doc):
                self.refused_reports.append((c.task_id, c.lease_id, code))
                already = (doc.get("details") or {}).get("status")
                if ambiguous and already == status:
                    self.reports[c.task_id].append(
                        Report(
                            body.get("result"),
                            body.get("error"),
                            c.lease_id,
                            c.worker,
                            status,
                            False,
                        )
                    )
                    self._terminal()
            else:
                self.unexpected.append(f"result {c.task_id}: {code} {str(doc)[:200]}")
            return
        c.released_at = wall_ms()
        if action == "nack":
            code, doc, _ = await op(
                "nack",
                c.task_id,
                {
                    "leaseId": c.lease_id,
                    "delaySeconds": rng.choice([0, 1]),
                    "reason": "planned nack",
                },
            )
            if code == 200 and doc["status"] == "dlq":
                self.dead_by_nack.add(c.task_id)
                self._terminal()
        else:
            code, doc, _ = await op("abandon", c.task_id, {"leaseId": c.lease_id})
        if code != 200 and not lease_refused(code, doc):
            self.unexpected.append(f"{action} {c.task_id}: {code} {str(doc)[:200]}")
        if lost and code == 200:
            self.unexpected.append(f"{action} {c.task_id} accepted after the lease was lost")

    async def _work(self, op: Op, c: Claim, seconds: float) -> bool:
        """Simulated work with heartbeats every lease/3; True if a heartbeat found the
        lease lost (the worker still reports, and the report must be refused)."""
        lost = False
        end = trio.current_time() + seconds
        every = self.s.lease_seconds / 3
        while trio.current_time() < end and not lost:
            await trio.sleep(min(every, end - trio.current_time()))  # the "work"
            if trio.current_time() >= end:
                break
            code, doc, _ = await op(
                "heartbeat",
                c.task_id,
                {"leaseId": c.lease_id, "extendSeconds": self.s.lease_seconds},
            )
            if code == 200:
                c.lease_until = max(c.lease_until, ms(doc["leaseUntil"]))
            elif lease_refused(code, doc):
                lost = c.refused = True
            else:
                self.unexpected.append(f"heartbeat {c.task_id}: {code} {str(doc)[:200]}")
        return lost

    # ------------------------------------------------------------ stream workers

    async def _stream_worker(self, n: int) -> None:
        """A worker on a worker stream: ``ready`` with ``max_in_flight``, each pushed task
        worked as its plan says (concurrently), reports sent on the stream. A stream that
        dies is reopened; the worker closes its stream once the run is finished and its
        tasks are done."""
        token = self.worker_tokens[n]
        sub = f"acct-w{n}"
        rng = random.Random(self.s.seed * 7919 + n)
        link = _Link()
        op = self._stream_op(link)
        async with trio.open_nursery() as jobs:
            while not (self.finished.is_set() and link.jobs == 0):
                stream = await self._open_stream(token)
                closing: list[bool] = []  # set once this worker closes the stream itself
                held: list[Claim] = []  # what this stream pushed
                async with trio.open_nursery() as conn:
                    conn.start_soon(self._read_stream, stream, closing)
                    conn.start_soon(self._close_when_done, stream, link, closing)
                    with contextlib.suppress(CodeqError):  # the stream died: reopen it
                        await stream.ready(
                            [self.s.command], self.s.max_in_flight, self.s.lease_seconds
                        )
                        link.set(stream)
                        async for pushed in stream.tasks:
                            self.statuses[("push", 200)] += 1
                            if pushed.command != self.s.command or not pushed.lease_id:
                                self.unexpected.append(f"pushed: {pushed.raw}")
                                continue
                            claim, action = self._claimed(pushed.raw, sub)
                            held.append(claim)
                            link.jobs += 1
                            jobs.start_soon(self._stream_job, link, op, claim, action, rng)
                    link.set(None)
                    await stream.aclose()
                    conn.cancel_scope.cancel()
                if not closing:
                    # Tasks the daemon claimed for this stream whose push never arrived
                    # (the stream died with them in flight) fill free slots only: a task
                    # pushed here, unreported and within its lease still took its slot.
                    now = wall_ms()
                    live = sum(
                        c.released_at is None and not c.refused and c.lease_until > now
                        for c in held
                    )
                    self.ambiguous_claims += max(0, self.s.max_in_flight - live)

    async def _stream_job(
        self, link: _Link, op: Op, claim: Claim, action: str, rng: random.Random
    ) -> None:
        try:
            await self._act(op, claim, action, rng)
        finally:
            link.jobs -= 1
            link.poke()

    async def _open_stream(self, token: str) -> WorkerStream:
        """A new worker stream, retried across connection errors until ``call_deadline``."""
        deadline = trio.current_time() + self.s.call_deadline
        delay = 0.05
        while True:
            t0 = wall_ms()
            try:
                stream = await WorkerStream.open(
                    f"{self.base}/v1/codeq",
                    {"Authorization": f"Bearer {token}"},
                    buffer=self.s.max_in_flight,
                    timeout=self.s.request_timeout,
                )
            except CodeqError as e:
                self.transport_errors[type(e).__name__] += 1
                self.statuses[("stream", 0)] += 1
                self.timeline.append(("stream", t0, wall_ms(), type(e).__name__, ""))
            else:
                self.statuses[("stream", 101)] += 1
                self.timeline.append(("stream", t0, wall_ms(), "101", ""))
                return stream
            if trio.current_time() + delay > deadline:
                raise CallFailed(f"worker stream: no answer within {self.s.call_deadline}s")
            await trio.sleep(delay)  # back-off between attempts to reconnect
            delay = min(delay * 2, 0.5)

    async def _read_stream(self, stream: WorkerStream, closing: list[bool]) -> None:
        try:
            await stream.run()
        except CodeqError as e:
            if not closing:
                self.transport_errors[f"stream {type(e).__name__}"] += 1

    async def _close_when_done(
        self, stream: WorkerStream, link: _Link, closing: list[bool]
    ) -> None:
        """Close the stream once the run is finished and this worker's tasks are done."""
        await self.finished.wait()
        while link.jobs:
            await link.changed.wait()
        closing.append(True)
        await stream.aclose()

    def _stream_op(self, link: _Link) -> Op:
        async def op(
            kind: str, task_id: str, body: dict[str, Any]
        ) -> tuple[int, dict[str, Any], int]:
            """Sent on the open stream; when the stream dies before answering, sent again on
            the next one (until ``call_deadline``), like ``call`` across a restart."""
            deadline = trio.current_time() + self.s.call_deadline
            ambiguous = 0
            delay = 0.05
            while True:
                with trio.move_on_at(deadline):
                    while link.stream is None:
                        await link.changed.wait()
                stream = link.stream
                if stream is None:
                    raise CallFailed(f"{kind} {task_id}: no stream within {self.s.call_deadline}s")
                endpoint = f"stream {kind}"
                started = time.perf_counter()
                t0 = wall_ms()
                self.in_flight += 1
                self._check_progress()
                try:
                    status, answer = await stream.request({"type": kind, "id": task_id, **body})
                except CodeqError as e:  # the stream closed: it may have been applied
                    self.transport_errors[type(e).__name__] += 1
                    self.statuses[(endpoint, 0)] += 1
                    self.timeline.append((endpoint, t0, wall_ms(), type(e).__name__, ""))
                    ambiguous += 1
                    while link.stream is stream:  # until the worker notices and reconnects
                        await link.changed.wait()
                    continue
                finally:
                    self.in_flight -= 1
                self.latencies[endpoint].append(time.perf_counter() - started)
                self.statuses[(endpoint, status)] += 1
                self.timeline.append((endpoint, t0, wall_ms(), str(status), ""))
                doc = answer if isinstance(answer, dict) else {"body": answer}
                if status >= 500 and status != 503:
                    self.unexpected.append(f"{endpoint} {task_id}: {status} {str(doc)[:200]}")
                if status not in (503, 500, 502, 504):
                    return status, doc, ambiguous
                ambiguous += 1
                if trio.current_time() + delay > deadline:
                    raise CallFailed(
                        f"{endpoint} {task_id}: no answer within {self.s.call_deadline}s"
                    )
                await trio.sleep(delay)  # back-off between retries of a failing call
                delay = min(delay * 2, 0.5)

        return op

    # ------------------------------------------------------------ progress

    def _terminal(self) -> None:
        self.terminal_seen += 1
        self._check_progress()

    def _check_progress(self) -> None:
        for predicate, event in self._progress:
            if predicate():
                event.set()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Until ``predicate()`` holds, re-checked at every create and terminal outcome."""
        event = trio.Event()
        self._progress.append((predicate, event))
        self._check_progress()
        await event.wait()

    async def wait_terminal(self, n: int) -> None:
        """Until the workers have seen ``n`` results or dead-letterings."""
        await self.wait_for(lambda: self.terminal_seen >= n)

    async def wait_created(self, n: int) -> None:
        await self.wait_for(lambda: len(self.created) >= n)

    async def queue_stats(self, http: httpx.AsyncClient) -> dict[str, Any]:
        r, _ = await self.call(http, "stats", "GET", f"/admin/queues/{self.s.command}", self.admin)
        return r.json()  # type: ignore[no-any-return]

    async def _monitor(self, http: httpx.AsyncClient) -> None:
        """Finished: producers done and the queue drained (nothing ready, delayed or held)."""
        await self.producers_done.wait()
        while True:
            st = await self.queue_stats(http)
            if st["ready"] == st["delayed"] == st["inProgress"] == 0:
                self.finished.set()
                return
            with trio.move_on_after(0.2):  # re-check the queue depth periodically
                await self.finished.wait()

    # ------------------------------------------------------------ run

    async def run(self, timeout: float) -> None:
        """Produce every task and work until the queue is drained; fail after ``timeout``."""
        limits = httpx.Limits(max_connections=self.s.workers + self.s.producers + 4)
        async with httpx.AsyncClient(limits=limits) as http:
            with trio.fail_after(timeout):
                async with trio.open_nursery() as nursery:
                    for n in range(self.s.workers):
                        if self.s.transport == "stream":
                            nursery.start_soon(self._stream_worker, n)
                        else:
                            nursery.start_soon(self._worker, http, n)
                    nursery.start_soon(self._monitor, http)
                    async with trio.open_nursery() as producers:
                        for p in range(self.s.producers):
                            producers.start_soon(
                                self._produce, http, range(p, self.s.tasks, self.s.producers)
                            )
                    self.producers_done.set()

    # ------------------------------------------------------------ reconcile

    async def reconcile(self) -> Reconciliation:
        """Compare the store's final state with the recorded history.

        Per acknowledged create: the task exists (else *lost*) and is terminal
        (else *stranded*). With an accepted result, its status and stored
        result are exactly that report's (and the lease it came from is the
        task's last claim: no result accepted from a stale lease, no claim
        after it). With none, it is FAILED / MAX_ATTEMPTS, dead-lettered and
        listed in the DLQ, with attempts >= maxAttempts. Claims of a task never
        overlap: each claim starts at or after the previous lease's last known
        end, unless the previous holder had already sent nack/abandon/result.
        attempts >= claims seen; the excess (claims the store applied whose
        response never arrived: a reset connection, a crash, a 503 from a
        script that ran but timed out; on streams, pushes a dead stream never
        delivered, at most its free slots) is at most the number of claim
        attempts that had no definite answer.
        """
        violations = list(self.unexpected)
        lost, stranded = [], []
        completed = failed = dead = attempts_total = claims_seen = excess = 0
        async with httpx.AsyncClient() as http:
            dlq: set[str] = set()
            cursor: str | None = "0"
            while cursor is not None:
                r, _ = await self.call(
                    http,
                    "dlq",
                    "GET",
                    f"/admin/queues/{self.s.command}/dlq?limit=500&cursor={cursor}",
                    self.admin,
                )
                page = r.json()
                dlq.update(t["id"] for t in page["tasks"])
                cursor = page["nextCursor"]
            stats = await self.queue_stats(http)
            for key, tid in sorted(self.created.items()):
                r, _ = await self.call(http, "get", "GET", f"/tasks/{tid}/result", self.producer)
                if r.status_code == 404 and r.json().get("code") == "result_not_found":
                    # Not terminal (no result yet): the task alone says where it is.
                    r, _ = await self.call(http, "get", "GET", f"/tasks/{tid}", self.producer)
                    if r.status_code == 200:
                        stranded.append(f"{key} ({tid}) {r.json()['status']}")
                        continue
                if r.status_code == 404:
                    lost.append(f"{key} ({tid})")
                    continue
                task, result = r.json()["task"], r.json()["result"]
                claims = sorted(self.claims.get(tid, []), key=lambda c: c.at)
                claims_seen += len(claims)
                attempts_total += task["attempts"]
                if task["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):
                    stranded.append(f"{key} ({tid}) {task['status']}")
                    continue
                excess += task["attempts"] - len(claims)
                if task["attempts"] < len(claims):
                    violations.append(f"{tid}: attempts {task['attempts']} < {len(claims)} claims")
                for a, b in itertools.pairwise(claims):
                    if b.at < a.lease_until and (a.released_at is None or a.released_at > b.at):
                        violations.append(
                            f"{tid}: {b.worker} claimed at {b.at} while {a.worker}'s lease "
                            f"{a.lease_id} ran to {a.lease_until} and was not released"
                        )
                reports = self.reports.get(tid, [])
                certain = [rep for rep in reports if rep.certain]
                if len(certain) > 1:
                    violations.append(f"{tid}: {len(certain)} results accepted")
                stored = result or {}
                match = [
                    rep
                    for rep in (certain or reports)
                    if rep.status == task["status"]
                    and stored.get("result") == rep.result
                    and stored.get("error") == rep.error
                ]
                # A report only maybe applied (its answer was lost, and a retry was refused
                # by a task already in that status) that the store does not show was not
                # applied: the task ended another way (dead-lettered), checked below.
                if certain or match:
                    if not match:
                        violations.append(
                            f"{tid}: store has {task['status']} {result} but the "
                            f"accepted reports were {reports}"
                        )
                    elif claims and match[0].lease_id != claims[-1].lease_id:
                        violations.append(
                            f"{tid}: result accepted from lease "
                            f"{match[0].lease_id}, not the last claim's"
                        )
                    if tid in dlq:
                        violations.append(f"{tid}: has a result yet sits in the DLQ")
                    completed += task["status"] == "COMPLETED"
                    failed += task["status"] == "FAILED"
                else:
                    if not (
                        task["status"] == "FAILED"
                        and task.get("error") == "MAX_ATTEMPTS"
                        and task.get("deadLettered")
                        and tid in dlq
                    ):
                        violations.append(
                            f"{tid}: no accepted result, yet {task['status']} "
                            f"error={task.get('error')} in_dlq={tid in dlq}"
                        )
                    if task["attempts"] < task["maxAttempts"]:
                        violations.append(f"{tid}: dead after {task['attempts']} attempts")
                    dead += 1
            if excess > self.ambiguous_claims:
                violations.append(
                    f"{excess} attempts beyond the claims seen, but only "
                    f"{self.ambiguous_claims} claim attempts lost their answer"
                )
            # Every create was retried until acknowledged, so nothing else can be dead.
            if not dlq <= set(self.keys):
                violations.append(f"DLQ holds tasks nobody created: {dlq - set(self.keys)}")
            if not self.dead_by_nack <= dlq:
                violations.append(
                    f"dead-lettered by nack, not in the DLQ: {self.dead_by_nack - dlq}"
                )
            if stats["ready"] or stats["delayed"] or stats["inProgress"]:
                stranded.append(f"queue not drained: {stats}")
            if stats["dlq"] != len(dlq):
                violations.append(f"DLQ count {stats['dlq']} but {len(dlq)} listed")
        return Reconciliation(
            len(self.created),
            completed,
            failed,
            dead,
            lost,
            stranded,
            violations,
            claims_seen,
            attempts_total,
            self.ambiguous_claims,
        )
