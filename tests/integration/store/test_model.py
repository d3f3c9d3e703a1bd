"""Model-based test of the store: random transition sequences against a pure model of SPEC §3.

A hypothesis ``RuleBasedStateMachine`` drives the real ``Store`` (Lua scripts on
the session redis-server) with create / claim / heartbeat / nack / abandon /
result / expire / promote / cancel / replay on a virtual clock (every call gets
an explicit ``now``), and after every step compares each task's status,
attempts and error, and every queue's ready / delayed / in-progress / DLQ
counts with the model. Claims are checked for *which* task they hand out
(priority, then FIFO), refusals for their exact error class.

A lease ends at its ``leaseUntil``: a heartbeat, nack, abandon or result after
it is refused (``lease_expired``) even before the reaper has retried the task.

The machine runs in a worker thread; each store call crosses back into the
test's trio run with ``trio.from_thread.run``, so one connection pool serves
every example.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from codeqd.config import BackoffConfig, Duration
from codeqd.domain.errors import CodeqError, Conflict, Forbidden, InvalidState, LeaseLost
from codeqd.domain.task import parse_new_task
from codeqd.store import Store
from codeqd.store._store import now_ms

TENANT = "t"
COMMANDS = ("a", "b")
BACKOFF_MS = 7_000  # fixed retry backoff: expiries and default nacks go to delayed
MAX_EXAMPLES = 30
#: KVRocks runs the same machine on fewer examples (the suite's time budget): the
#: scripts are the same, what differs is the server under them.
MAX_EXAMPLES_BY_KIND = {"redis": MAX_EXAMPLES, "kvrocks": 8}
#: Mostly well-behaved callers, so transitions succeed more often than they are refused.
WHO = st.sampled_from(["owner", "owner", "owner", "owner", "other"])
WHICH = st.sampled_from(["current", "current", "current", "current", "stale", "none"])
#: Background steps move the clock first: 0 (nothing due yet), the boundaries, far ahead.
ADVANCE = st.sampled_from([0, 0, 999, 1000, 2000, 7000, 30_000])
STEPS = 80


@dataclass
class MTask:
    """What SPEC §3 says one task is, and where it sits."""

    id: str
    command: str
    priority: int
    max_attempts: int
    status: str = "PENDING"
    attempts: int = 0
    where: str = "ready"  # ready | delayed | inprog | dlq | done
    seq: int = 0  # FIFO position while ready
    run_at: int = 0  # while delayed
    lease_until: int = 0  # while in progress
    worker: str | None = None
    lease_id: str | None = None
    error: str | None = None
    dead_at: int = 0
    leases: list[str] = field(default_factory=list)  # every lease id ever issued

    def end_lease(self) -> None:
        self.lease_until = 0

    @property
    def member(self) -> str:
        return f"{TENANT}|{self.command}|{self.id}"

    @property
    def score(self) -> float:
        return (9 - self.priority) * 1e14 + self.seq


class Model:
    def __init__(self, start: int) -> None:
        self.now = start
        self.seq = 0
        self.tasks: dict[str, MTask] = {}

    def enqueue(self, t: MTask) -> None:
        self.seq += 1
        t.where, t.seq, t.status = "ready", self.seq, "PENDING"

    def retry(self, t: MTask, mode: str, delay_ms: int, reason: str) -> str:
        """nack / abandon / expire of an in-progress task: requeue or dead-letter."""
        if reason:
            t.error = reason
        t.end_lease()
        if mode != "abandon" and t.attempts >= t.max_attempts:
            t.status, t.error, t.where, t.dead_at = "FAILED", "MAX_ATTEMPTS", "dlq", self.now
            return "DEAD"
        if delay_ms > 0:
            t.status, t.where, t.run_at = "PENDING", "delayed", self.now + delay_ms
        else:
            self.enqueue(t)
        return "REQUEUED"

    def counts(self, command: str) -> tuple[int, int, int, int]:
        ts = [t for t in self.tasks.values() if t.command == command]
        return (
            sum(t.where == "ready" for t in ts),
            sum(t.where == "delayed" for t in ts),
            sum(t.where == "inprog" for t in ts),
            sum(t.where == "dlq" for t in ts),
        )


def _expected_refusal(
    t: MTask, worker: str, lease: str | None, now: int
) -> type[CodeqError] | None:
    """The error the ownership checks of heartbeat/nack/abandon/result must give."""
    if t.status != "IN_PROGRESS":
        return InvalidState
    if t.worker != worker:
        return Forbidden  # 403 not_lease_holder, as codeQ answers
    if lease is not None and lease != t.lease_id:
        return LeaseLost
    if t.lease_until <= now:
        return LeaseLost  # lease_expired
    return None


class StoreMachine(RuleBasedStateMachine):
    store: Store
    token: trio.lowlevel.TrioToken
    examples = 0
    steps = 0

    def __init__(self) -> None:
        super().__init__()
        self.model = Model(now_ms())
        type(self).examples += 1

    def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        async def go() -> Any:
            return await fn(*args, **kw)

        return trio.from_thread.run(go, trio_token=self.token)

    def attempt(self, fn: Any, *args: Any, **kw: Any) -> tuple[Any, CodeqError | None]:
        try:
            return self.call(fn, *args, **kw), None
        except CodeqError as e:
            return None, e

    @initialize()
    def fresh_store(self) -> None:
        async def flush() -> None:
            await self.store.client.flushall()
            await self.store.init_keyspace()

        trio.from_thread.run(flush, trio_token=self.token)

    def pick(self, i: int | str, where: tuple[str, ...] | None = None) -> MTask | None:
        if isinstance(i, str):
            return self.model.tasks[i]
        ts = [t for t in self.model.tasks.values() if where is None or t.where in where]
        return ts[i % len(ts)] if ts else None

    def worker_for(self, t: MTask, who: str) -> str:
        owner = t.worker or "w1"
        return owner if who == "owner" else ("w2" if owner == "w1" else "w1")

    def lease_for(self, t: MTask, which: str) -> str | None:
        if which == "none":
            return None
        if which == "current":
            return t.lease_id or "no-lease"
        stale = [x for x in t.leases if x != t.lease_id]
        return stale[-1] if stale else "made-up-lease"

    # ------------------------------------------------------------ rules

    @rule(ms=st.sampled_from([1, 999, 1000, 3000, 7000, 30_000]))
    def tick(self, ms: int) -> None:
        self.model.now += ms

    @rule(
        specs=st.lists(
            st.tuples(
                st.sampled_from(COMMANDS),
                st.integers(0, 2),
                st.integers(1, 3),
                st.sampled_from([None, None, 0, 2, 10]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def create(self, specs: list[tuple[str, int, int, int | None]]) -> None:
        for spec in specs:
            self.create_one(*spec)

    def create_one(self, command: str, priority: int, max_attempts: int, delay: int | None) -> None:
        m = self.model
        body: dict[str, Any] = {
            "command": command,
            "payload": {"n": len(m.tasks)},
            "priority": priority,
            "maxAttempts": max_attempts,
        }
        if delay is not None:
            body["delaySeconds"] = delay
        new = parse_new_task(body, now_ms=m.now, default_max_attempts=5, max_depth=32)
        meta, _, created = self.call(self.store.create, TENANT, new, now=m.now)
        assert created and meta["status"] == "PENDING" and meta["attempts"] == 0
        t = MTask(meta["id"], command, priority, max_attempts)
        m.tasks[t.id] = t
        if new.run_at_ms > m.now:
            t.where, t.run_at = "delayed", new.run_at_ms
        else:
            m.enqueue(t)

    @rule(
        worker=st.sampled_from(["w1", "w2"]),
        commands=st.sampled_from([("a",), ("b",), ("a", "b"), ("b", "a")]),
        max_tasks=st.integers(1, 3),
        lease_s=st.sampled_from([1, 5, 30]),
    )
    def claim(self, worker: str, commands: tuple[str, ...], max_tasks: int, lease_s: int) -> None:
        self.claim_now(worker, commands, max_tasks, lease_s)

    @rule(worker=st.sampled_from(["w1", "w2"]), lease_s=st.sampled_from([1, 5]))
    def claim_any(self, worker: str, lease_s: int) -> None:
        self.claim_now(worker, COMMANDS, 1, lease_s)

    @rule(
        worker=st.sampled_from(["w1", "w2"]),
        action=st.sampled_from(
            ["complete", "fail", "nack", "nack0", "abandon", "die", "heartbeat"]
        ),
    )
    def work(self, worker: str, action: str) -> None:
        """A worker's whole turn: claim one task, then act on it with the lease it got."""
        for t in self.claim_now(worker, COMMANDS, 1, 1):
            lease = t.lease_id
            if action in ("complete", "fail"):
                self.result(
                    t.id, "owner", "current", "COMPLETED" if action == "complete" else "FAILED"
                )
            elif action.startswith("nack"):
                self.nack(t.id, "owner", "current", 0 if action == "nack0" else None)
            elif action == "abandon":
                self.abandon(t.id, "owner", "current")
            elif action == "heartbeat":
                self.heartbeat(t.id, "owner", "current", 10)
            assert lease is not None

    def claim_now(
        self, worker: str, commands: tuple[str, ...], max_tasks: int, lease_s: int
    ) -> list[MTask]:
        m = self.model
        ready = sorted(
            (t for t in m.tasks.values() if t.where == "ready" and t.command in commands),
            key=lambda t: t.score,
        )
        expected = ready[:max_tasks]
        got = self.call(
            self.store.claim, TENANT, worker, list(commands), lease_s, max_tasks, now=m.now
        )
        assert [c.meta["id"] for c in got] == [t.id for t in expected], "claim order"
        for t, c in zip(expected, got, strict=True):
            t.status, t.where, t.worker = "IN_PROGRESS", "inprog", worker
            t.attempts += 1
            t.error = None
            t.lease_until = m.now + lease_s * 1000
            t.lease_id = c.meta["leaseId"]
            assert t.lease_id not in t.leases, "a lease id was reused"
            t.leases.append(t.lease_id)
            assert c.meta["attempts"] == t.attempts
            assert c.meta["leaseUntil"] == t.lease_until
        return expected

    @precondition(lambda self: self.model.tasks)
    @rule(i=st.integers(0, 50), who=WHO, which=WHICH, extend=st.sampled_from([1, 10]))
    def heartbeat(self, i: int | str, who: str, which: str, extend: int) -> None:
        t = self.pick(i, ("inprog",)) or self.pick(i)
        assert t is not None
        worker = self.worker_for(t, who)
        lease = self.lease_for(t, which)
        until, err = self.attempt(
            self.store.heartbeat, TENANT, t.id, worker, lease, extend, now=self.model.now
        )
        want = _expected_refusal(t, worker, lease, self.model.now)
        assert type(err) is (want or type(None)), (err, want)
        if want is None:
            t.lease_until = self.model.now + extend * 1000
            assert until == t.lease_until

    @precondition(lambda self: self.model.tasks)
    @rule(i=st.integers(0, 50), who=WHO, which=WHICH, delay=st.sampled_from([None, 0, 3]))
    def nack(self, i: int | str, who: str, which: str, delay: int | None) -> None:
        t = self.pick(i, ("inprog",)) or self.pick(i)
        assert t is not None
        worker = self.worker_for(t, who)
        lease = self.lease_for(t, which)
        out, err = self.attempt(
            self.store.nack, TENANT, t.id, worker, lease, delay, None, now=self.model.now
        )
        want = _expected_refusal(t, worker, lease, self.model.now)
        assert type(err) is (want or type(None)), (err, want)
        if want is None:
            delay_ms = BACKOFF_MS if delay is None else delay * 1000
            outcome = self.model.retry(t, "nack", delay_ms, "NACK")
            assert out == (
                ("dead_lettered", 0) if outcome == "DEAD" else ("requeued", delay_ms // 1000)
            )

    @precondition(lambda self: self.model.tasks)
    @rule(i=st.integers(0, 50), who=WHO, which=WHICH)
    def abandon(self, i: int | str, who: str, which: str) -> None:
        t = self.pick(i, ("inprog",)) or self.pick(i)
        assert t is not None
        worker = self.worker_for(t, who)
        lease = self.lease_for(t, which)
        _, err = self.attempt(self.store.abandon, TENANT, t.id, worker, lease, now=self.model.now)
        want = _expected_refusal(t, worker, lease, self.model.now)
        assert type(err) is (want or type(None)), (err, want)
        if want is None:
            self.model.retry(t, "abandon", 0, "")

    @precondition(lambda self: self.model.tasks)
    @rule(
        i=st.integers(0, 50), who=WHO, which=WHICH, status=st.sampled_from(["COMPLETED", "FAILED"])
    )
    def result(self, i: int | str, who: str, which: str, status: str) -> None:
        t = self.pick(i, ("inprog",)) or self.pick(i)
        assert t is not None
        worker = self.worker_for(t, who)
        lease = self.lease_for(t, which)
        error = "boom" if status == "FAILED" else None
        out, err = self.attempt(
            self.store.report,
            TENANT,
            t.id,
            worker,
            lease,
            status,
            {"ok": 1} if status == "COMPLETED" else None,
            error,
            [],
            now=self.model.now,
        )
        want = _expected_refusal(t, worker, lease, self.model.now)
        assert type(err) is (want or type(None)), (err, want)
        if want is None:
            t.status, t.where, t.error = status, "done", error
            t.end_lease()
            meta, doc = out
            assert meta["status"] == status and doc["status"] == status

    @rule(advance=ADVANCE)
    def expire(self, advance: int) -> None:
        m = self.model
        m.now += advance
        due = sorted(
            (t for t in m.tasks.values() if t.where == "inprog" and t.lease_until <= m.now),
            key=lambda t: (t.lease_until, t.member),
        )
        for t in due:
            m.retry(t, "expire", BACKOFF_MS, "LEASE_EXPIRED")
        assert self.call(self.store.reap_expired, m.now) == len(due)

    @rule(advance=ADVANCE)
    def promote(self, advance: int) -> None:
        m = self.model
        m.now += advance
        due = sorted(
            (t for t in m.tasks.values() if t.where == "delayed" and t.run_at <= m.now),
            key=lambda t: (t.run_at, t.member),
        )
        for t in due:
            m.enqueue(t)
        assert self.call(self.store.promote_due, m.now) == len(due)

    @precondition(lambda self: self.model.tasks)
    @rule(i=st.integers(0, 50))
    def cancel(self, i: int) -> None:
        t = self.pick(i)
        assert t is not None
        meta, err = self.attempt(self.store.cancel, TENANT, t.id, now=self.model.now)
        if t.status in ("PENDING", "IN_PROGRESS"):
            assert err is None, err
            t.status, t.where = "CANCELLED", "done"
            t.end_lease()
            assert meta["status"] == "CANCELLED"
        else:
            assert isinstance(err, Conflict) and err.code == "already_terminal", err

    @rule(
        command=st.sampled_from(COMMANDS),
        by_id=st.booleans(),
        limit=st.integers(1, 3),
        i=st.integers(0, 50),
    )
    def replay(self, command: str, by_id: bool, limit: int, i: int) -> None:
        m = self.model
        dead = sorted(
            (t for t in m.tasks.values() if t.where == "dlq" and t.command == command),
            key=lambda t: (t.dead_at, t.id),
        )
        if by_id:
            # Some dead tasks of the queue plus, when there is one, a task that is not.
            chosen = dead[:limit] if dead else []
            other = self.pick(i, ("ready", "inprog", "done", "delayed"))
            ids = [t.id for t in chosen] + ([other.id] if other else [])
            replayed, missing = self.call(self.store.dlq_replay, TENANT, command, ids, 0, now=m.now)
            assert missing == ([other.id] if other else [])
        else:
            chosen = dead[:limit]
            replayed, missing = self.call(
                self.store.dlq_replay, TENANT, command, None, limit, now=m.now
            )
            assert missing == []
        assert replayed == [t.id for t in chosen]
        for t in chosen:
            t.attempts = 0
            m.enqueue(t)

    # ------------------------------------------------------------ the check

    @invariant()
    def store_equals_model(self) -> None:
        type(self).steps += 1
        m = self.model

        async def snapshot() -> tuple[dict[str, Any], dict[str, Any]]:
            metas = {tid: (await self.store.get(TENANT, tid))[0] for tid in m.tasks}
            stats = {c: await self.store.queue_stats(TENANT, c) for c in COMMANDS}
            return metas, stats

        metas, stats = trio.from_thread.run(snapshot, trio_token=self.token)
        for tid, t in m.tasks.items():
            got = metas[tid]
            assert (got["status"], got["attempts"], got.get("error")) == (
                t.status,
                t.attempts,
                t.error,
            ), (tid, got, t)
            if t.where == "inprog":
                assert (got["workerId"], got["leaseId"], got["leaseUntil"]) == (
                    t.worker,
                    t.lease_id,
                    t.lease_until,
                )
            if t.where == "dlq":
                assert got.get("deadLettered") is True
        for c in COMMANDS:
            s = stats[c]
            assert (s.ready, s.delayed, s.in_progress, s.dlq) == m.counts(c), (c, s)


@pytest.mark.slow
async def test_store_matches_the_model(store: Store, store_kind: str) -> None:
    examples = MAX_EXAMPLES_BY_KIND[store_kind]
    store.config = dataclasses.replace(
        store.config, backoff=BackoffConfig(policy="fixed", base=Duration(BACKOFF_MS / 1000))
    )
    machine = type(
        "BoundStoreMachine",
        (StoreMachine,),
        {"store": store, "token": trio.lowlevel.current_trio_token(), "examples": 0, "steps": 0},
    )

    def run() -> None:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=STEPS,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            ),
        )

    await trio.to_thread.run_sync(run)
    print(f"state machine: {machine.examples} examples, {machine.steps} checked steps")
    assert machine.examples >= examples
