"""Group commit: single-task creates, claims and results that arrive together become
one batch script call per (tenant, shard) — per worker, for results; per (commands,
lease, shards), for claims, the n-th task claimed leased to the n-th claimer.

Route handlers call ``Store.create`` / ``Store.report`` as before; while the
process's writer runs (``serve`` starts it beside the HTTP server), those put their
request on the writer's bounded channel (ingress → store writer) and wait on a
one-shot reply. The writer takes whatever is waiting — a request that arrives
alone goes out at once, never on a timer — up to ``store.script_items`` requests,
splits it by kind, tenant, shard (and worker), runs each part as one batch script
call (``create_batch.lua`` / ``result_batch.lua``, each atomic) concurrently, and
answers every caller with its own outcome: its task, its refusal, or 503 when its
part's call failed. A part either applied or not; parts are independent, so one
failing call answers only its own callers. While one group is being written the
next accumulates: the busier the ingress, the larger the groups.

Cancellation: a caller that stops waiting (its client went away) does not
withdraw its request; like any store call, it may or may not have been applied.
A claim is the exception, as it is for a claim made directly: a claimer that stops
waiting holds no lease it never saw — whoever finds the claimed task without its
claimer (the caller, if its answer came first; the writer, if it answers a claimer
that left) releases it, attempt given back, before anything else runs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
import trio

from codeqd import metrics
from codeqd.domain.errors import CodeqError, StoreUnavailable
from codeqd.domain.ids import is_task_id, shard_of
from codeqd.domain.task import NewTask
from codeqd.store._batch import Created, Report
from codeqd.store._keys import escape_tenant
from codeqd.store._store import ClaimedTask, Meta

if TYPE_CHECKING:
    from codeqd.store._face import Store

log = structlog.get_logger("codeqd.store.writer")


@dataclass(eq=False)
class _Request:
    tenant: str
    done: trio.Event = field(default_factory=trio.Event)
    outcome: Any = None
    error: BaseException | None = None

    def answer(self, outcome: Any = None, error: BaseException | None = None) -> None:
        self.outcome, self.error = outcome, error
        self.done.set()


@dataclass(eq=False)
class _Create(_Request):
    task: NewTask | None = None


@dataclass(eq=False)
class _Claim(_Request):
    worker: str = ""
    commands: Sequence[str] | None = None
    lease_seconds: int = 0
    shards: frozenset[int] | None = None
    #: The caller stopped waiting: whoever holds its answer releases the task.
    left: bool = False


@dataclass(eq=False)
class _Result(_Request):
    worker: str = ""
    report: Report | None = None


class Writer:
    """The process's store writer (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.max_group = store.config.store.script_items
        self._in, self._out = trio.open_memory_channel[_Request](self.max_group * 4)
        self.running = False
        metrics.track_depth("writer", self)
        #: Groups written and requests in them (for tests and the bench).
        self.groups = 0
        self.requests = 0

    def pending(self) -> int:
        """Requests waiting for the writer (``codeq_actor_inbox_depth{actor="writer"}``)."""
        return int(self._out.statistics().current_buffer_used)

    # ------------------------------------------------------------ callers

    async def create(self, tenant: str, task: NewTask) -> Created:
        req = _Create(tenant, task=task)
        return await self._submit(req)  # type: ignore[no-any-return]

    async def claim(
        self,
        tenant: str,
        worker: str,
        commands: Sequence[str] | None,
        lease_seconds: int,
        shards: Collection[int] | None,
    ) -> list[ClaimedTask]:
        """One task at most, claimed in a group with whoever claims the same now."""
        req = _Claim(
            tenant,
            worker=worker,
            commands=commands,
            lease_seconds=lease_seconds,
            shards=None if shards is None else frozenset(shards),
        )
        try:
            return await self._submit(req)  # type: ignore[no-any-return]
        except BaseException:
            req.left = True
            if req.done.is_set() and req.outcome:  # answered, then cancelled: not seen
                with trio.CancelScope(shield=True):
                    await self.store.release(tenant, worker, req.outcome)
            raise

    async def report(
        self,
        tenant: str,
        worker: str,
        task_id: str,
        lease_id: str | None,
        status: str,
        result: dict[str, Any] | None,
        error: str | None,
        artifacts: list[dict[str, Any]],
        inline: Sequence[tuple[str, bytes]] = (),
    ) -> tuple[Meta, Any]:
        report = Report(task_id, lease_id, status, result, error, artifacts, list(inline))
        req = _Result(tenant, worker=worker, report=report)
        return await self._submit(req)  # type: ignore[no-any-return]

    async def _submit(self, req: _Request) -> Any:
        """Queue ``req`` (waiting for room: backpressure by the channel) and wait for
        its answer. Cancellation: see the module docstring."""
        try:
            try:
                self._in.send_nowait(req)  # room: no scheduling round before the wait
            except trio.WouldBlock:
                await self._in.send(req)
        except trio.ClosedResourceError:
            raise StoreUnavailable("the store writer has stopped") from None
        await req.done.wait()
        if req.error is not None:
            raise req.error
        return req.outcome

    # ------------------------------------------------------------ the writer

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write groups until cancelled; requests still queued then are answered 503
        (their callers' ``serve`` is stopping too)."""
        self.running = True
        task_status.started()
        try:
            while True:
                group = [await self._out.receive()]
                while len(group) < self.max_group:
                    try:
                        group.append(self._out.receive_nowait())
                    except trio.WouldBlock:
                        break
                await self._write(group)
        finally:
            self.running = False
            self._in.close()
            while True:
                try:
                    self._out.receive_nowait().answer(
                        error=StoreUnavailable("the store writer has stopped")
                    )
                except (trio.WouldBlock, trio.EndOfChannel):
                    break

    async def _write(self, group: Sequence[_Request]) -> None:
        self.groups += 1
        self.requests += len(group)
        parts: dict[tuple[Any, ...], list[_Request]] = {}
        rotating: dict[str, int] = {}
        store = self.store
        for req in group:
            ten = escape_tenant(req.tenant)
            if isinstance(req, _Create):
                assert req.task is not None
                idem = req.task.idempotency_key
                if idem is not None:
                    s = store.idempotency_shard(ten, idem)
                else:
                    if ten not in rotating:
                        rotating[ten] = store._pick_shard()
                    s = rotating[ten]
                parts.setdefault(("create", req.tenant, s), []).append(req)
            elif isinstance(req, _Claim):
                cmds = None if req.commands is None else tuple(sorted(req.commands))
                key = ("claim", req.tenant, cmds, req.lease_seconds, req.shards)
                parts.setdefault(key, []).append(req)
            elif isinstance(req, _Result):
                assert req.report is not None
                task_id = req.report.task_id
                s = shard_of(task_id, store.shards) if is_task_id(task_id) else -1
                parts.setdefault(("result", req.tenant, req.worker, s), []).append(req)
        try:
            if len(parts) == 1:  # the common case: no task to start, no nursery
                for key, reqs in parts.items():
                    await self._write_part(key, reqs)
            else:
                async with trio.open_nursery() as nursery:
                    for key, reqs in parts.items():
                        nursery.start_soon(self._write_part, key, reqs)
        finally:  # cancelled mid-group: nobody is left waiting for ever
            for req in group:
                if not req.done.is_set():
                    req.answer(error=StoreUnavailable("the store writer has stopped"))

    async def _write_part(self, key: tuple[Any, ...], reqs: list[_Request]) -> None:
        """One batch script call; every caller of the part gets its own answer."""
        try:
            if key[0] == "create":
                tasks = [r.task for r in reqs if isinstance(r, _Create) and r.task is not None]
                created = await self.store.create_batch(key[1], tasks, shard=key[2])
                for req, out in zip(reqs, created, strict=True):
                    req.answer(out)
            elif key[0] == "claim":
                await self._claim_part(reqs)
            else:
                reports = [r.report for r in reqs if isinstance(r, _Result) and r.report]
                results = await self.store.report_batch(key[1], key[2], reports)
                for req, res in zip(reqs, results, strict=True):
                    if isinstance(res, CodeqError):
                        req.answer(error=res)
                    else:
                        req.answer(res)
        except Exception as e:  # the part's call failed: each of its callers hears it
            err = (
                e
                if isinstance(e, CodeqError)
                else StoreUnavailable(f"the task store is unavailable ({type(e).__name__})")
            )
            if not isinstance(e, CodeqError):
                log.exception("store.group_failed", kind=key[0], size=len(reqs))
            for req in reqs:
                if not req.done.is_set():
                    req.answer(error=err)

    async def _claim_part(self, reqs: list[_Request]) -> None:
        claims = [r for r in reqs if isinstance(r, _Claim)]
        first = claims[0]
        workers = [r.worker for r in claims]
        tasks = await self.store.claim(
            first.tenant,
            first.worker,
            first.commands,
            first.lease_seconds,
            len(claims),
            first.shards,
            workers=workers,
        )
        left: list[ClaimedTask] = []
        for i, req in enumerate(claims):
            mine = tasks[i : i + 1]
            if req.left:  # its caller is gone: nobody will see this task
                left += mine
            req.answer(mine)
        if left:
            with trio.CancelScope(shield=True):
                await self.store.release(first.tenant, first.worker, left)
