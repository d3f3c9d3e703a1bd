"""Store: one method per task transition, each one Lua script call (one atomic step).

Every method raises ``StoreUnavailable`` when the store cannot be reached in
``store.command_timeout``, and a domain error (``TaskNotFound``, ``LeaseLost``,
``InvalidState``...) when the transition is refused. Cancellation: every
``await`` here is a store round trip and may be cancelled; a cancelled call
may or may not have been applied (the script runs atomically either way).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

import coredis
import coredis.exceptions as cx
import orjson
import structlog
import trio

from codeqd import metrics
from codeqd.config import Config, ConfigError
from codeqd.domain.backoff import backoff_ms
from codeqd.domain.errors import (
    CodeqError,
    StoreUnavailable,
    TaskNotFound,
    ValidationError,
)
from codeqd.domain.events import TaskEvent, parse_event, told_events
from codeqd.domain.ids import is_task_id, new_task_id, shard_of
from codeqd.domain.records import new_meta, result_doc
from codeqd.domain.states import refusal_error
from codeqd.domain.task import NewTask
from codeqd.store._conn import TCP, UnsupportedServer, cluster_nodes, server_problem
from codeqd.store._hints import QueueWork, TaskDone
from codeqd.store._keys import Keys, escape_tenant, field, member, qname, split_member
from codeqd.store._lean import NoScript, lean_for

if TYPE_CHECKING:
    from codeqd.store._hints import Wakeups
    from codeqd.store._writer import Writer

Meta = dict[str, Any]
log = structlog.get_logger("codeqd.store")
_UNAVAILABLE = (
    cx.ConnectionError,
    cx.ClusterDownError,
    cx.TryAgainError,
    OSError,
    trio.TooSlowError,
    TimeoutError,
)


#: Error codes of a reply by which the store says "not now" (the call did not run).
NOT_NOW = frozenset(
    {"LOADING", "BUSY", "MASTERDOWN", "MISCONF", "READONLY", "TRYAGAIN", "CLUSTERDOWN"}
)


def not_now(e: cx.ResponseError) -> bool:
    """Whether the store said "not now" with ``e``: loading its data after a restart,
    busy with a script, refusing writes. The call did not run, so the caller hears
    503 as for a lost connection (coredis and the lean client both raise these as a
    plain ``ResponseError``; ``Transitions._call`` maps them)."""
    return str(e).split(" ", 1)[0] in NOT_NOW


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ClaimedTask:
    meta: Meta
    payload: str


#: The states a queue's tasks are listed by (``Transitions.queue_page``).
QueueState = Literal["ready", "delayed", "in_progress", "dlq"]
QUEUE_STATES: tuple[QueueState, ...] = ("ready", "delayed", "in_progress", "dlq")
#: Entries of a shard-wide index (delayed, leases) one page call looks at, at most.
SCAN_BUDGET = 5000


@dataclass(frozen=True)
class QueueItem:
    """A task of a queue page, with its index score: the claim-order score (ready),
    runAt (delayed), the lease's expiry (in progress) or the dead-letter time (dlq)."""

    meta: Meta
    payload: str
    score: float


def parse_page_cursor(cursor: str, shards: int) -> tuple[int, int] | None:
    """``shard.rank`` (``''``: the first page) as numbers; None when malformed."""
    if not cursor:
        return 0, 0
    shard, dot, rank = cursor.partition(".")
    if not (dot and shard.isdigit() and rank.isdigit() and len(cursor) <= 24):
        return None
    if int(shard) >= shards:
        return None
    return int(shard), int(rank)


@dataclass(frozen=True)
class QueueStats:
    command: str
    ready: int
    delayed: int
    in_progress: int
    dlq: int
    paused: bool


#: Most minutes ``Transitions.rates`` reads (the counters live 2 hours).
RATES_MAX_MINUTES = 120
#: The series of ``Rates``, in the order the rate scripts give them (fields c, d, f, x).
RATE_SERIES = ("created", "completed", "failed", "deadLettered")


@dataclass(frozen=True)
class Rates:
    """A tenant's transitions per minute, summed over shards: ``start`` is the first
    minute (ms since the epoch), each series one count per minute, oldest first, the
    last the current (partial) minute."""

    start: int
    created: list[int]
    completed: list[int]
    failed: list[int]
    dead_lettered: list[int]

    def totals(self) -> dict[str, int]:
        return dict(zip(RATE_SERIES, (sum(s) for s in self.series()), strict=True))

    def series(self) -> tuple[list[int], list[int], list[int], list[int]]:
        return self.created, self.completed, self.failed, self.dead_lettered


def count_reported(reported: list[tuple[Meta, str]], now: int) -> None:
    """Metrics of workers' results: (task metadata, status) of one report or a batch."""
    metrics.inc_each(metrics.TASK_COMPLETED, ((meta["command"], st) for meta, st in reported))
    for meta, _ in reported:
        if "claimedAt" in meta:
            metrics.observe(metrics.PROCESSING_LATENCY, max(0, now - meta["claimedAt"]) / 1000)


_LUA = resources.files("codeqd.store").joinpath("lua")


def script_source(name: str) -> str:
    """``lua/<name>.lua``, with ``lua/_lib.lua`` prepended when its first line is ``--@lib``."""
    source = _LUA.joinpath(f"{name}.lua").read_text()
    if source.startswith("--@lib\n"):
        source = _LUA.joinpath("_lib.lua").read_text() + source
    return source


def queues_complete(commands: Sequence[str] | None, queues: Sequence[str]) -> bool:
    """Whether one claim call over ``queues`` covered every queue the claim asked for."""
    return commands is not None and len(queues) == len(commands)


class Transitions:
    """One connection pool to the store; one method per transition. The package's
    face, ``Store`` (``_face.py``), adds the store's other parts to it."""

    #: Set by ``Store``: the process's wake-up listener (transitions post their
    #: hints to it) and its group-commit writer (``create``/``claim``/``report`` use it while
    #: it runs).
    wakeups: Wakeups
    writer: Writer

    def __init__(self, config: Config, client: Any, url: str) -> None:
        self.config = config
        self.url = url
        self.client = client
        self.keys = Keys(config.store.prefix, config.store.shards)
        self.shards = config.store.shards
        self._timeout = float(config.store.command_timeout)
        self._scripts: dict[str, Any] = {}
        self._next_shard = 0
        #: trio time of the last call the store answered (see ``_unavailable``).
        self._answered = trio.current_time()
        #: What the store is ("Redis 7.0.15", "KVRocks 2.10.1"), once known.
        self.server = "unknown"
        #: Whether it is KVRocks (scripts then run inside MULTI/EXEC); None: not asked yet.
        self.kvrocks: bool | None = None
        #: Script calls on one node go through the lean client (``_lean``).
        self.lean = lean_for(
            getattr(client, "connection_pool", None),
            url,
            config.store.max_connections,
            float(config.store.connect_timeout),
        )

    # ------------------------------------------------------------ plumbing

    def _script(self, name: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(script_source(name))
        return script

    async def run_script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``lua/<name>.lua`` (EVALSHA, loading it when the store lacks it).

        On KVRocks the call is wrapped in ``MULTI``/``EXEC``: a script's own
        ``redis.call`` writes are separate RocksDB writes, so a crash of the store
        mid-script could persist half a transition; inside ``EXEC`` every write of
        the script goes to one write batch, committed (and logged) as one unit
        (``Storage::BeginTxn``/``CommitTxn`` in KVRocks' sources). Reads inside the
        script see its own earlier writes (the batch is indexed)."""
        started = time.perf_counter()
        try:
            with self._call():
                if self.kvrocks is None:
                    await self.identify()
                script = self._script(name)
                if self.lean is not None:
                    out = await self._lean_call(script, list(keys), list(args))
                elif self.kvrocks:
                    out = await self._in_multi(script, list(keys), list(args))
                elif isinstance(self.client, coredis.RedisCluster):
                    out = await self._evalsha(script, list(keys), list(args))
                else:
                    out = await script(keys=list(keys), args=list(args))
            return out
        finally:
            metrics.observe(metrics.STORE_DURATION, time.perf_counter() - started, name)

    async def _lean_call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA through the lean client (inside MULTI/EXEC on KVRocks); on NOSCRIPT,
        SCRIPT LOAD and again."""
        assert self.lean is not None
        try:
            return await self.lean.evalsha(script.sha, keys, args, multi=bool(self.kvrocks))
        except NoScript:
            await self.load_script(script.script)
            return await self.lean.evalsha(script.sha, keys, args, multi=bool(self.kvrocks))

    async def _in_multi(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """``MULTI; EVALSHA; EXEC`` in one round trip (SCRIPT LOAD and again on NOSCRIPT)."""
        for attempt in (1, 2):
            try:
                async with self.client.pipeline(transaction=True) as pipe:
                    reply = pipe.evalsha(script.sha, keys=keys, args=args)
                return await reply
            except cx.NoScriptError:
                if attempt == 2:
                    raise
                await self.load_script(script.script)
        raise AssertionError("unreachable")

    async def _evalsha(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA on a cluster; on NOSCRIPT, SCRIPT LOAD on the primaries and again
        (coredis' own fallback loads on every node, replicas too, which refuse it)."""
        try:
            return await self.client.evalsha(script.sha, keys=keys, args=args)
        except cx.NoScriptError:
            await self.load_script(script.script)
            return await self.client.evalsha(script.sha, keys=keys, args=args)

    async def load_script(self, source: str) -> None:
        """SCRIPT LOAD on the one node, or on every primary of a cluster (a replica
        refuses it: READONLY), each over a short-lived connection of its own."""
        if not isinstance(self.client, coredis.RedisCluster):
            await self.client.script_load(source)
            return
        _, username, password = cluster_nodes(self.url)
        for node in self.client.connection_pool.cluster_layout.primaries:
            pool = coredis.ConnectionPool(
                location=coredis.connection.TCPLocation(node.host, node.port),
                connection_class=TCP,
                username=username,
                password=password,
                connect_timeout=float(self.config.store.connect_timeout),
                stream_timeout=self._timeout,
                max_connections=1,
            )
            async with coredis.Redis(connection_pool=pool, verify_version=False) as one:
                await one.script_load(source)

    async def identify(self) -> None:
        """Which server this is (``server``; ``kvrocks``), from ``INFO server``."""
        info = await self.client.info("server")
        if info and all(isinstance(v, dict) for v in info.values()):
            info = next(iter(info.values()))  # a cluster: one node's answer
        self.server, _ = server_problem("\n".join(f"{k}:{v}" for k, v in info.items()))
        self.kvrocks = "kvrocks_version" in info

    async def command(self, coro_fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self._call():
            return await coro_fn(*args, **kwargs)

    @contextmanager
    def _call(self) -> Iterator[None]:
        """One store call: bounded by ``store.command_timeout``; no answer, or an answer
        by which the store says "not now" (``not_now``), is ``StoreUnavailable`` (503);
        any other error reply is a bug and stays as it is. An answer marks the store as
        answering (see ``_unavailable``)."""
        try:
            with trio.fail_after(self._timeout):
                yield
        except _UNAVAILABLE as e:
            raise self._unavailable(e) from e
        except cx.ResponseError as e:
            if not_now(e):
                raise StoreUnavailable(f"the task store is unavailable ({str(e)[:60]})") from e
            raise
        self._answered = trio.current_time()

    def _unavailable(self, e: BaseException) -> StoreUnavailable:
        """The error for a call the store did not answer. A reply that never came may
        still be owed on its connection (a black-holed path that heals without a reset
        delivers nothing new on it). When calls time out and none has been answered
        for two command timeouts, the pooled connections are dropped, so the next calls
        open fresh ones instead of queueing behind replies that will not come. A slow
        but answering store (other calls still succeed) keeps its connections."""
        if isinstance(e, trio.TooSlowError | TimeoutError):
            silent = trio.current_time() - self._answered
            if silent > 2 * self._timeout:
                log.warning("store.reconnecting", silent_seconds=round(silent, 1))
                self.client.connection_pool.disconnect()
                if self.lean is not None:
                    self.lean.disconnect()
                self._answered = trio.current_time()
        return StoreUnavailable(f"the task store is unavailable ({type(e).__name__})")

    def _pick_shard(self) -> int:
        s = self._next_shard
        self._next_shard = (s + 1) % self.shards
        return s

    async def ping(self) -> bool:
        try:
            with trio.fail_after(self._timeout):
                await self.client.ping()
            return True
        except (*_UNAVAILABLE, cx.RedisError):
            return False

    async def server_refusal(self) -> str | None:
        """Why the store cannot work with codeqd (KVRocks without RESP3, Redis older than
        6.2...), or None: it can, or it does not answer (an outage, not a refusal)."""
        try:
            with trio.fail_after(self._timeout):
                info = await self.client.info("server")
        except UnsupportedServer as e:
            return str(e)
        except (*_UNAVAILABLE, cx.RedisError):
            return None
        if info and all(isinstance(v, dict) for v in info.values()):
            info = next(iter(info.values()))  # a cluster: one node's answer
        what, problem = server_problem("\n".join(f"{k}:{v}" for k, v in info.items()))
        self.server, self.kvrocks = what, "kvrocks_version" in info
        return problem

    async def init_keyspace(self) -> None:
        """Record the shard count at first start; refuse a different one later
        (``ConfigError``: the supervisor logs it and exits with the config-error code)."""
        await self.command(self.client.hsetnx, self.keys.meta, "shards", str(self.shards))
        recorded = await self.command(self.client.hget, self.keys.meta, "shards")
        if recorded is not None and int(recorded) != self.shards:
            raise ConfigError(
                f"store.shards = {self.shards}, but this keyspace (prefix "
                f"{self.keys.prefix!r}) was initialised with {recorded} shards; "
                "the number of shards cannot change"
            )
        if await self.command(self.client.hget, self.keys.meta, "claim_index") is None:
            await self._build_claim_index()
            await self.command(self.client.hset, self.keys.meta, {"claim_index": "1"})

    async def _build_claim_index(self) -> None:
        """Index the claimable queues of a keyspace written before the index existed
        (once; bounded calls of ``store.script_items`` queues)."""
        size = self.config.store.script_items
        for k in self.keys.all():
            queues = sorted(await self.command(self.client.smembers, k.queues))
            for lo in range(0, len(queues), size):
                page = [q.partition("|") for q in queues[lo : lo + size]]
                await self.run_script(
                    "reindex",
                    [k.paused, *(x for t, _, c in page for x in (k.avail(t), k.ready(t, c)))],
                    [x for t, _, c in page for x in (f"{t}|{c}", c)],
                )

    # ------------------------------------------------------------ lookups

    async def _lookup(self, tenant: str, task_id: str) -> tuple[int, str, Meta]:
        if not is_task_id(task_id):
            raise TaskNotFound(task_id)
        s = shard_of(task_id, self.shards)
        ten = escape_tenant(tenant)
        raw = await self.command(self.client.hget, self.keys.shard(s).task, field(ten, task_id))
        if raw is None:
            raise TaskNotFound(task_id)
        return s, ten, orjson.loads(raw)

    async def get(self, tenant: str, task_id: str) -> tuple[Meta, str]:
        """The task's metadata and payload JSON; TaskNotFound for another tenant's id."""
        if not is_task_id(task_id):
            raise TaskNotFound(task_id)
        s = shard_of(task_id, self.shards)
        k = self.keys.shard(s)
        f = field(escape_tenant(tenant), task_id)
        meta_raw, payload = await self._multi_hget([(k.task, f), (k.payload, f)])
        if meta_raw is None:
            raise TaskNotFound(task_id)
        return orjson.loads(meta_raw), payload or "{}"

    async def get_with_result(self, tenant: str, task_id: str) -> tuple[Meta, str, str | None]:
        if not is_task_id(task_id):
            raise TaskNotFound(task_id)
        s = shard_of(task_id, self.shards)
        k = self.keys.shard(s)
        f = field(escape_tenant(tenant), task_id)
        meta_raw, payload, result = await self._multi_hget(
            [(k.task, f), (k.payload, f), (k.result, f)]
        )
        if meta_raw is None:
            raise TaskNotFound(task_id)
        return orjson.loads(meta_raw), payload or "{}", result

    async def find_by_idempotency_key(self, tenant: str, key: str) -> str | None:
        """The id of the tenant's task created with idempotency ``key``, or None. The
        key is known for as long as it de-duplicates (``tasks.idempotency_ttl``), and only
        while its task exists."""
        ten = escape_tenant(tenant)
        k = self.keys.shard(self.idempotency_shard(ten, key))
        task_id: str | None = await self.command(self.client.get, k.idem(ten, key))
        if task_id is None or not is_task_id(task_id):
            return None
        if not await self.command(self.client.hexists, k.task, field(ten, task_id)):
            return None
        return task_id

    async def task_events(self, tenant: str, task_id: str) -> list[TaskEvent]:
        """The task's events, oldest first: ``created`` (from the task record), then the
        last ``EVENTS_MAX`` recorded ones or, while the task has no list, those its
        record tells (``told_events``: a first claim and its result). An empty list for
        an unknown task; only ``created`` for a task written before the store kept events
        (no ``createdBy``: ``by`` is then '')."""
        if not is_task_id(task_id):
            return []
        k = self.keys.shard(shard_of(task_id, self.shards))
        ten = escape_tenant(tenant)
        with self._call():
            async with self.client.pipeline(transaction=False) as pipe:
                meta_f = pipe.hget(k.task, field(ten, task_id))
                events_f = pipe.lrange(k.events(ten, task_id), 0, -1)
            raw_meta, raw = await meta_f, await events_f
        if raw_meta is None:
            return []
        meta = orjson.loads(raw_meta)
        created = TaskEvent("created", int(meta["createdAt"]), {"by": meta.get("createdBy", "")})
        if not raw:
            return [created, *told_events(meta)]
        return [created, *(ev for ev in map(parse_event, raw) if ev is not None)]

    async def artifact(self, tenant: str, task_id: str, name: str) -> bytes | None:
        """An inline artifact's content, by its stored name; None when there is none."""
        if not is_task_id(task_id):
            return None
        k = self.keys.shard(shard_of(task_id, self.shards))
        with self.client.decoding(False):  # the content is bytes, not text
            raw: bytes | None = await self.command(
                self.client.hget, k.artifacts, f"{field(escape_tenant(tenant), task_id)}|{name}"
            )
        return raw

    async def _multi_hget(self, pairs: list[tuple[str, str]]) -> list[str | None]:
        """HGET each (key, field) in one round trip (a task's record, payload, result)."""
        if self.lean is not None:
            with self._call():
                return await self.lean.pipeline([("HGET", key, f) for key, f in pairs])
        with self._call():
            async with self.client.pipeline(transaction=False) as pipe:
                futures = [pipe.hget(key, f) for key, f in pairs]
            return [await fut for fut in futures]

    # ------------------------------------------------------------ transitions

    async def create(
        self, tenant: str, task: NewTask, *, now: int | None = None
    ) -> tuple[Meta, str, bool]:
        """Store a new task; with an idempotency key seen before, the first task instead.

        Returns (meta, payload, created). ``now`` (ms; default the clock) exists so
        tests can drive every transition on a virtual clock. While the writer runs,
        concurrent creates share one script call (group commit).
        """
        if now is None and self.writer.running:
            return await self.writer.create(tenant, task)
        ten = escape_tenant(tenant)
        if task.idempotency_key is not None:
            s = self.idempotency_shard(ten, task.idempotency_key)
        else:
            s = self._pick_shard()
        k = self.keys.shard(s)
        task_id = new_task_id(s)
        now = now_ms() if now is None else now
        meta = new_meta(task_id, tenant, task, now)
        meta_json = orjson.dumps(meta)
        idem_ttl = self.idempotency_ttl_ms(task)
        q = qname(ten, task.command)
        out = await self.run_script(
            "create",
            [
                k.task,
                k.payload,
                k.seq,
                k.ready(ten, task.command),
                k.delayed,
                k.counts,
                k.queues,
                k.cmds(ten),
                k.idem(ten, task.idempotency_key or ""),
                k.avail(ten),
                k.paused,
            ],
            [
                field(ten, task_id),
                meta_json,
                task.payload,
                now,
                task.run_at_ms,
                task.priority,
                idem_ttl,
                member(ten, task.command, task_id),
                q,
                task.command,
                k.wake,
                task_id,
            ],
        )
        if out[0] == 0:
            return orjson.loads(out[1]), out[2] or "{}", False
        metrics.add(metrics.TASK_CREATED, task.command)
        if task.run_at_ms <= now:
            self.wakeups.post(QueueWork(ten, task.command, 1, s))
        return meta, task.payload.decode(), True

    def idempotency_shard(self, ten: str, key: str) -> int:
        """The shard a task with an idempotency key lives on: derived from the key, so
        that every create with that key (single or batch) meets the first one."""
        if self.shards == 1:
            return 0
        return int.from_bytes(orjson.dumps([ten, key])[-8:], "big") % self.shards

    def idempotency_ttl_ms(self, task: NewTask) -> int:
        return int(self.config.tasks.idempotency_ttl * 1000) if task.idempotency_key else 0

    async def commands_of(self, tenant: str, shards: Collection[int] | None = None) -> list[str]:
        """Every command the tenant has used on ``shards`` (default: all), for listing."""
        ten = escape_tenant(tenant)
        found: set[str] = set()
        for s in range(self.shards) if shards is None else shards:
            found.update(await self.command(self.client.smembers, self.keys.shard(s).cmds(ten)))
        return sorted(found)

    async def claim(
        self,
        tenant: str,
        worker_id: str,
        commands: Sequence[str] | None,
        lease_seconds: int,
        max_tasks: int = 1,
        shards: Collection[int] | None = None,
        *,
        now: int | None = None,
        workers: Sequence[str] | None = None,
    ) -> list[ClaimedTask]:
        """Lease up to ``max_tasks`` tasks of ``commands`` (None: any command of the
        tenant); visits ``shards`` (default: every shard, starting at a rotating one so
        that none is starved).

        While the writer runs, concurrent single-task claims share one script call
        (group commit; the writer calls back here with ``workers``: one worker per
        task, in order, the i-th task claimed leased to the i-th of them).

        Every script call is bounded whatever the data (``store.script_items`` tasks,
        ``store.claim_queues`` queues), so a large claim is several short calls between
        which other clients' calls run. All or nothing for the caller: when a later call
        fails or the claim is cancelled, the tasks already leased are released (attempt
        given back) before the error propagates, so no lease is held for a response
        that was never sent.
        """
        if now is None and workers is None and max_tasks == 1 and self.writer.running:
            return await self.writer.claim(tenant, worker_id, commands, lease_seconds, shards)
        if workers is not None:
            max_tasks = len(workers)
        ten = escape_tenant(tenant)
        if commands is not None and not commands:
            return []
        out: list[ClaimedTask] = []
        start = self._pick_shard()
        order = (
            [(start + i) % self.shards for i in range(self.shards)]
            if shards is None
            else sorted(shards)
        )
        try:
            for s in order:
                while len(out) < max_tasks:
                    queues = await self._claimable(s, ten, commands)
                    if not queues:
                        break
                    want = min(max_tasks - len(out), self.config.store.script_items)
                    got = await self._claim_call(
                        s,
                        ten,
                        worker_id,
                        queues,
                        lease_seconds,
                        want,
                        now,
                        workers[len(out) : len(out) + want] if workers else (),
                    )
                    out += got
                    # Fewer than asked: the queues looked at are dry. With every listed
                    # queue in one call that is the whole shard; walking the index, the
                    # next call looks at the next queues (each call drains one at least).
                    if not got or (len(got) < want and queues_complete(commands, queues)):
                        break
                if len(out) >= max_tasks:
                    break
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.release(tenant, worker_id, out)
            raise
        metrics.inc_each(metrics.TASK_CLAIMED, ((c.meta["command"],) for c in out))
        return out

    async def _claimable(self, s: int, ten: str, commands: Sequence[str] | None) -> list[str]:
        """The queues one claim call of shard ``s`` should look at, best head first, at
        most ``store.claim_queues``: from the tenant's claimable index (wildcard claims,
        and lists longer than the bound), or the listed commands as they are."""
        k = self.keys.shard(s)
        limit = self.config.store.claim_queues
        if commands is None:
            found: list[str] = await self.command(self.client.zrange, k.avail(ten), 0, limit - 1)
            return found
        if len(commands) <= limit:
            return list(commands)
        scores = await self.command(self.client.zmscore, k.avail(ten), list(commands))
        ranked = sorted(
            (float(sc), c) for c, sc in zip(commands, scores, strict=True) if sc is not None
        )
        return [c for _, c in ranked[:limit]]

    async def _claim_call(
        self,
        s: int,
        ten: str,
        worker_id: str,
        queues: Sequence[str],
        lease_seconds: int,
        want: int,
        now: int | None,
        workers: Sequence[str] = (),
    ) -> list[ClaimedTask]:
        k = self.keys.shard(s)
        raw = await self.run_script(
            "claim",
            [
                k.task,
                k.payload,
                k.leases,
                k.paused,
                k.counts,
                k.avail(ten),
                *(k.ready(ten, c) for c in queues),
            ],
            [
                now or 0,  # 0: the store's clock; leases are set and checked by it
                lease_seconds * 1000,
                worker_id,
                secrets.token_hex(8),
                ten,
                want,
                *queues,
                *workers,
            ],
        )
        return [ClaimedTask(orjson.loads(raw[j]), raw[j + 1]) for j in range(0, len(raw), 2)]

    async def release(self, tenant: str, worker_id: str, tasks: Sequence[ClaimedTask]) -> None:
        """Hand back claimed tasks whose claim never reached the worker: each goes back
        to the head of its priority with the claim's attempt given back. Best effort
        (bounded by ``store.command_timeout`` each): a task not released keeps its
        lease, and the reaper retries it when the lease runs out."""
        ten = escape_tenant(tenant)
        for t in tasks:
            s = shard_of(t.meta["id"], self.shards)
            worker = str(t.meta.get("workerId") or worker_id)  # a group's tasks: each its own
            try:
                await self._retry(
                    s, ten, t.meta, "release", worker, t.meta.get("leaseId", ""), 0, ""
                )
            except CodeqError as e:
                log.warning("task.release_failed", task_id=t.meta["id"], error=e.message)
            else:
                log.info("task.released", task_id=t.meta["id"], worker_id=worker)

    async def heartbeat(
        self,
        tenant: str,
        task_id: str,
        worker_id: str,
        lease_id: str | None,
        extend_seconds: int,
        *,
        now: int | None = None,
    ) -> int:
        """Extend the lease; returns the new leaseUntil in ms."""
        if not is_task_id(task_id):
            raise TaskNotFound(task_id)
        k = self.keys.shard(shard_of(task_id, self.shards))
        ten = escape_tenant(tenant)
        out = await self.run_script(
            "heartbeat",
            [k.task, k.leases],
            [
                field(ten, task_id),
                worker_id,
                lease_id or "",
                now or 0,  # 0: the store's clock, which set the lease
                extend_seconds * 1000,
                ten,
            ],
        )
        if out[0] != "OK":
            raise refusal_error(out[0], task_id, out[1:])
        return int(out[1])

    async def report(
        self,
        tenant: str,
        task_id: str,
        worker_id: str,
        lease_id: str | None,
        status: Literal["COMPLETED", "FAILED"],
        result: dict[str, Any] | None,
        error: str | None,
        artifacts: list[dict[str, Any]],
        *,
        inline: Sequence[tuple[str, bytes]] = (),
        now: int | None = None,
    ) -> tuple[Meta, dict[str, Any]]:
        """The lease holder's result; the task becomes terminal, and ``inline`` artifact
        contents (by stored name) are kept with it. Returns (meta, Result). While the
        writer runs, concurrent results share one script call (group commit)."""
        if now is None and self.writer.running:
            return await self.writer.report(
                tenant, worker_id, task_id, lease_id, status, result, error, artifacts, inline
            )
        if not is_task_id(task_id):
            raise TaskNotFound(task_id)
        k = self.keys.shard(shard_of(task_id, self.shards))
        ten = escape_tenant(tenant)
        store_now = now or 0  # 0: the store's clock, which set the lease
        now = now_ms() if now is None else now
        doc = result_doc(task_id, status, result, error, artifacts, now)
        out = await self.run_script(
            "result",
            [k.task, k.result, k.leases, k.done, k.counts, k.outbox, k.artifacts],
            [
                field(ten, task_id),
                worker_id,
                lease_id or "",
                store_now,
                status,
                orjson.dumps(doc),
                error or "",
                self.keys.done_channel,
                ten,
                *(x for pair in inline for x in pair),
            ],
        )
        if out[0] != "OK":
            raise refusal_error(out[0], task_id, out[1:])
        meta = orjson.loads(out[1])
        count_reported([(meta, status)], now)
        self.wakeups.post(TaskDone(((ten, task_id),), bool(meta.get("webhook"))))
        return meta, doc

    async def _retry(
        self,
        s: int,
        ten: str,
        meta: Meta,
        mode: Literal["nack", "abandon", "release", "expire"],
        worker_id: str,
        lease_id: str,
        delay_ms: int,
        reason: str,
        now: int | None = None,
    ) -> list[Any]:
        k = self.keys.shard(s)
        cmd, task_id = meta["command"], meta["id"]
        out: list[Any] = await self.run_script(
            "retry",
            [
                k.task,
                k.leases,
                k.delayed,
                k.counts,
                k.ready(ten, cmd),
                k.dlq(ten, cmd),
                k.seq,
                k.outbox,
                k.avail(ten),
                k.paused,
            ],
            [
                field(ten, task_id),
                member(ten, cmd, task_id),
                qname(ten, cmd),
                now or 0,  # 0: the store's clock, which set the lease
                mode,
                worker_id,
                lease_id,
                delay_ms,
                reason,
                k.wake,
                self.keys.done_channel,
                task_id,
            ],
        )
        if mode == "expire" and out[0] in ("REQUEUED", "DEAD"):
            metrics.add(metrics.LEASE_EXPIRED, cmd)
        if out[0] == "DEAD":
            metrics.add(metrics.TASK_COMPLETED, cmd, "FAILED")
            self.wakeups.post(TaskDone(((ten, task_id),), bool(meta.get("webhook"))))
        elif out[0] == "REQUEUED" and out[1] == "0":
            self.wakeups.post(QueueWork(ten, cmd, 1, s))
        return out

    def backoff_ms(self, meta: Meta) -> int:
        """The task's retry delay after its attempts so far (its command's policy)."""
        return backoff_ms(
            self.config.backoff.for_command(meta["command"]), int(meta.get("attempts", 1))
        )

    async def nack(
        self,
        tenant: str,
        task_id: str,
        worker_id: str,
        lease_id: str | None,
        delay_seconds: int | None,
        reason: str | None,
        *,
        now: int | None = None,
    ) -> tuple[str, int]:
        """Retry later (backoff, or ``delay_seconds`` capped by the max) or dead-letter.

        Returns ("requeued", delay_seconds) or ("dead_lettered", 0).
        """
        s, ten, meta = await self._lookup(tenant, task_id)
        cap_ms = int(self.config.backoff.for_command(meta["command"]).max * 1000)
        delay_ms = (
            min(cap_ms, delay_seconds * 1000)
            if delay_seconds is not None
            else self.backoff_ms(meta)
        )
        out = await self._retry(
            s, ten, meta, "nack", worker_id, lease_id or "", delay_ms, reason or "NACK", now
        )
        if out[0] == "DEAD":
            return "dead_lettered", 0
        if out[0] != "REQUEUED":
            raise refusal_error(out[0], task_id, out[1:])
        return "requeued", (delay_ms + 999) // 1000

    async def abandon(
        self,
        tenant: str,
        task_id: str,
        worker_id: str,
        lease_id: str | None,
        *,
        now: int | None = None,
    ) -> None:
        s, ten, meta = await self._lookup(tenant, task_id)
        out = await self._retry(s, ten, meta, "abandon", worker_id, lease_id or "", 0, "", now)
        if out[0] != "REQUEUED":
            raise refusal_error(out[0], task_id, out[1:])

    async def cancel(
        self, tenant: str, task_id: str, *, now: int | None = None, by: str = ""
    ) -> Meta:
        """Cancel a task that is not terminal; ``by`` (a token's ``sub``) goes in its
        ``cancelled`` event."""
        s, ten, meta = await self._lookup(tenant, task_id)
        k = self.keys.shard(s)
        cmd = meta["command"]
        out = await self.run_script(
            "cancel",
            [
                k.task,
                k.leases,
                k.delayed,
                k.counts,
                k.ready(ten, cmd),
                k.done,
                k.outbox,
                k.avail(ten),
                k.paused,
            ],
            [
                field(ten, task_id),
                member(ten, cmd, task_id),
                qname(ten, cmd),
                now_ms() if now is None else now,
                task_id,
                self.keys.done_channel,
                by,
            ],
        )
        if out[0] != "OK":
            raise refusal_error(out[0], task_id, out[1:])
        metrics.add(metrics.TASK_COMPLETED, cmd, "CANCELLED")
        meta = orjson.loads(out[1])
        self.wakeups.post(TaskDone(((ten, task_id),), bool(meta.get("webhook"))))
        return meta  # type: ignore[no-any-return]

    # ------------------------------------------------------------ background work

    async def _due(self, key: str, now: int, limit: int) -> list[str]:
        """The first ``limit`` members of the sorted set ``key`` scored ``now`` or less:
        the promoter's and the reaper's poll, several times a second on an idle daemon
        (through the lean client where there is one: a third of an idle daemon's CPU
        went to coredis here)."""
        if self.lean is None:
            found: list[str] = await self.command(
                self.client.zrangebyscore, key, "-inf", now, offset=0, count=limit
            )
            return found
        with self._call():
            reply = await self.lean.command("ZRANGEBYSCORE", key, "-inf", now, "LIMIT", 0, limit)
        return list(reply)

    async def promote_due(self, now: int | None = None, limit: int = 500) -> int:
        """Move due delayed tasks to ready on every shard; at most ``limit`` per shard."""
        now = now_ms() if now is None else now
        moved = 0
        for s, k in enumerate(self.keys.all()):
            due = await self._due(k.delayed, now, limit)
            if not due:
                continue
            per_member = [
                key
                for ten, cmd, _ in map(split_member, due)
                for key in (k.ready(ten, cmd), k.avail(ten))
            ]
            out = await self.run_script(
                "promote",
                [k.task, k.delayed, k.counts, k.seq, k.paused, *per_member],
                [now, k.wake, *due],
            )
            moved += int(out[0])
            for j in range(1, len(out), 2):
                ten, _, cmd = out[j].partition("|")
                self.wakeups.post(QueueWork(ten, cmd, int(out[j + 1]), s))
        return moved

    async def reap_expired(self, now: int | None = None, limit: int = 500) -> int:
        """Retry (with backoff) or dead-letter tasks whose lease expired; returns count."""
        now = now_ms() if now is None else now
        reaped = 0
        for s, k in enumerate(self.keys.all()):
            expired = await self._due(k.leases, now, limit)
            if not expired:
                continue
            parsed = [split_member(m) for m in expired]
            metas = await self.command(
                self.client.hmget, k.task, [field(ten, tid) for ten, _, tid in parsed]
            )
            for (ten, _, _), raw in zip(parsed, metas, strict=True):
                if raw is None:
                    continue
                meta = orjson.loads(raw)
                if meta.get("status") != "IN_PROGRESS":
                    continue
                out = await self._retry(
                    s,
                    ten,
                    meta,
                    "expire",
                    "",
                    meta.get("leaseId", ""),
                    self.backoff_ms(meta),
                    "LEASE_EXPIRED",
                    now,
                )
                if out[0] in ("REQUEUED", "DEAD"):
                    reaped += 1
            # Members whose task vanished cannot be retried; drop them from the index.
            stale = [m for m, raw in zip(expired, metas, strict=True) if raw is None]
            if stale:
                await self.command(self.client.zrem, k.leases, stale)
        return reaped

    async def cleanup(self, before_ms: int, limit: int, tenant: str | None = None) -> int:
        """Delete terminal tasks finished before ``before_ms`` (with their payloads,
        results and inline artifacts); at most ``limit`` per shard; only ``tenant``'s
        when given (pages through the shared index, at most 100 pages)."""
        deleted = 0
        mine = f"{escape_tenant(tenant)}|" if tenant is not None else ""
        for k in self.keys.all():
            old: list[str] = []
            for page in range(100 if tenant is not None else 1):
                got = await self.command(
                    self.client.zrangebyscore,
                    k.done,
                    "-inf",
                    f"({before_ms}",
                    offset=page * limit,
                    count=limit,
                )
                old.extend(m for m in got if m.startswith(mine))
                if len(got) < limit or len(old) >= limit:
                    break
            old = old[:limit]
            if old:
                deleted += await self.run_script(
                    "cleanup",
                    [k.task, k.payload, k.result, k.done, k.artifacts],
                    [before_ms, *old],
                )
        return deleted

    # ------------------------------------------------------------ queues (admin)

    async def _stats(self, ten: str, commands: Sequence[str]) -> list[QueueStats]:
        """Stats of the tenant's ``commands``: one script call per shard per
        ``store.script_items`` queues."""
        totals = [[0, 0, 0, 0, 0] for _ in commands]
        size = self.config.store.script_items
        for k in self.keys.all():
            for lo in range(0, len(commands), size):
                page = commands[lo : lo + size]
                out = await self.run_script(
                    "stats",
                    [
                        k.counts,
                        k.paused,
                        *(x for c in page for x in (k.ready(ten, c), k.dlq(ten, c))),
                    ],
                    [qname(ten, c) for c in page],
                )
                for j in range(len(page)):
                    row = totals[lo + j]
                    for f in range(5):
                        row[f] += int(out[5 * j + f])
        return [
            QueueStats(c, t[0], t[1], t[2], t[3], t[4] > 0)
            for c, t in zip(commands, totals, strict=True)
        ]

    async def rates(self, tenant: str, minutes: int = 60, *, now: int | None = None) -> Rates:
        """The tenant's created / completed / failed / dead-lettered tasks per minute over
        the last ``minutes`` (1..120, the current minute last; zero-filled), from the
        per-minute counters the transition scripts keep: one read-only script per shard
        (``minutes`` HMGETs). ``now`` (ms; default the store's clock) is for tests."""
        if not 1 <= minutes <= RATES_MAX_MINUTES:
            raise ValidationError("minutes", f"expected 1..{RATES_MAX_MINUTES}")
        ten = escape_tenant(tenant)
        last: int | None = None
        sums = [[0] * minutes for _ in RATE_SERIES]
        for k in self.keys.all():
            out = await self.run_script("rates", [k.task], [ten, now or 0, minutes])
            # Every shard of one store answers the same minute; a cluster's nodes may
            # straddle a minute boundary: align on the first shard's.
            shift = 0 if last is None else int(out[0]) - last
            last = int(out[0]) if last is None else last
            for i in range(minutes):
                j = i + shift
                if 0 <= j < minutes:
                    for f in range(4):
                        sums[f][i] += int(out[1 + 4 * j + f])
        assert last is not None
        return Rates((last - minutes + 1) * 60_000, *sums)

    async def queue_stats(self, tenant: str, command: str) -> QueueStats:
        return (await self._stats(escape_tenant(tenant), [command]))[0]

    async def all_queues(self, limit: int) -> list[tuple[str, str]]:
        """(escaped tenant, command) of every queue of every tenant, at most ``limit``."""
        queues: set[str] = set()
        for k in self.keys.all():
            queues.update(await self.command(self.client.smembers, k.queues))
        return [(q.partition("|")[0], q.partition("|")[2]) for q in sorted(queues)[:limit]]

    async def queue_stats_escaped(self, ten: str, command: str) -> QueueStats:
        """Stats of a queue named by its escaped tenant (as ``all_queues`` gives it)."""
        return (await self._stats(ten, [command]))[0]

    async def list_queues(
        self, tenant: str, limit: int, after: str = ""
    ) -> tuple[list[QueueStats], str | None]:
        """A page of the tenant's queues in command order, those after ``after``; returns
        the page and the cursor of the next one (None after the last)."""
        commands = [c for c in await self.commands_of(tenant) if c > after]
        page = commands[:limit]
        stats = await self._stats(escape_tenant(tenant), page)
        return stats, (page[-1] if len(commands) > limit else None)

    async def set_paused(self, tenant: str, command: str, paused: bool) -> None:
        ten = escape_tenant(tenant)
        q = qname(ten, command)
        for k in self.keys.all():
            await self.run_script(
                "pause",
                [k.paused, k.cmds(ten), k.avail(ten), k.ready(ten, command)],
                [q, command, "1" if paused else "0"],
            )
        if not paused:
            await self.command(self.client.publish, self.keys.wake_channel, f"1000000:{q}")
            self.wakeups.post(QueueWork(ten, command, 1_000_000, None))

    async def dlq_page(
        self, tenant: str, command: str, limit: int, cursor: int
    ) -> tuple[list[tuple[Meta, str]], int | None]:
        """Dead tasks oldest first; ``cursor`` is an offset across shards in order (the
        admin API's cursor; the dashboard pages with ``queue_page``)."""
        ten = escape_tenant(tenant)
        items: list[tuple[Meta, str]] = []
        offset = cursor
        for s, k in enumerate(self.keys.all()):
            size = await self.command(self.client.zcard, k.dlq(ten, command))
            if offset >= size:
                offset -= size
                continue
            page, _ = await self._index_page(
                s, ten, command, "dlq", offset, limit - len(items), SCAN_BUDGET
            )
            offset = 0
            items.extend((i.meta, i.payload) for i in page)
            if len(items) >= limit:
                return items, cursor + limit
        return items, None

    async def queue_page(
        self, tenant: str, command: str, state: QueueState, cursor: str, limit: int
    ) -> tuple[list[QueueItem], str | None]:
        """A page of the queue's tasks in ``state``, in its index's order: ready in claim
        order (shard by shard), delayed by runAt, in progress by lease expiry, dlq by
        dead-letter time (each within a shard; shards one after the other). ``cursor``
        is ``''`` or a page's next cursor (``shard.rank``); ``ValidationError`` when it
        is malformed. Never loads a whole queue: ready and dlq are per-queue indexes read
        by rank; delayed and in progress come from shard-wide indexes walked at most
        ``SCAN_BUDGET`` entries per call, so a page can come back short, with a cursor.
        Returns the page and the next cursor (None after the last page)."""
        at = parse_page_cursor(cursor, self.shards)
        if at is None:
            raise ValidationError("cursor", "expected a cursor given by the previous page")
        s, rank = at
        ten = escape_tenant(tenant)
        items: list[QueueItem] = []
        while s < self.shards and len(items) < limit:
            page, nxt = await self._index_page(
                s, ten, command, state, rank, limit - len(items), SCAN_BUDGET
            )
            items.extend(page)
            if nxt < 0:
                s, rank = s + 1, 0
            elif len(items) < limit:  # the scan budget ran out: a short page
                return items, f"{s}.{nxt}"
            else:
                rank = nxt
        return items, (f"{s}.{rank}" if s < self.shards else None)

    async def _index_page(
        self, s: int, ten: str, command: str, state: QueueState, rank: int, limit: int, budget: int
    ) -> tuple[list[QueueItem], int]:
        """One ``index_page`` call on shard ``s`` and the tasks it names; the next rank
        (-1: the shard's index is done)."""
        k = self.keys.shard(s)
        prefix = f"{ten}|{command}|"
        index, prefix = {
            "ready": (k.ready(ten, command), ""),
            "dlq": (k.dlq(ten, command), ""),
            "delayed": (k.delayed, prefix),
            "in_progress": (k.leases, prefix),
        }[state]
        keys, args = [index], [prefix, rank, limit, budget]
        if state == "ready":  # read from the queue's score in the claimable index on
            keys, args = [index, k.avail(ten)], [*args, command]
        out = await self.run_script("index_page", keys, args)
        ids, scores = out[1::2], out[2::2]
        if not ids:
            return [], int(out[0])
        fields = [field(ten, tid) for tid in ids]
        metas = await self.command(self.client.hmget, k.task, fields)
        payloads = await self.command(self.client.hmget, k.payload, fields)
        items = [
            QueueItem(orjson.loads(m), p or "{}", float(sc))
            for m, p, sc in zip(metas, payloads, scores, strict=True)
            if m is not None
        ]
        return items, int(out[0])

    async def _dlq_select(
        self, ten: str, command: str, ids: list[str] | None, limit: int
    ) -> tuple[dict[int, list[str]], list[str]]:
        """Chosen ids grouped by shard (malformed ids reported missing), or the oldest
        ``limit`` dead tasks of the queue."""
        by_shard: dict[int, list[str]] = {}
        missing: list[str] = []
        if ids is not None:
            for tid in ids:
                if is_task_id(tid):
                    by_shard.setdefault(shard_of(tid, self.shards), []).append(tid)
                else:
                    missing.append(tid)
            return by_shard, missing
        remaining = limit
        for s, k in enumerate(self.keys.all()):
            if remaining <= 0:
                break
            got = await self.command(self.client.zrange, k.dlq(ten, command), 0, remaining - 1)
            if got:
                by_shard[s] = list(got)
                remaining -= len(got)
        return by_shard, missing

    async def dlq_replay(
        self,
        tenant: str,
        command: str,
        ids: list[str] | None,
        limit: int,
        *,
        now: int | None = None,
        by: str = "",
    ) -> tuple[list[str], list[str]]:
        """Replay chosen ids, or the oldest ``limit``; returns (replayed, not_found).
        ``by`` (a token's ``sub``) goes in each task's ``replayed`` event."""
        ten = escape_tenant(tenant)
        by_shard, missing = await self._dlq_select(ten, command, ids, limit)
        replayed: list[str] = []
        for s, shard_ids in by_shard.items():
            k = self.keys.shard(s)
            ok, gone = await self.run_script(
                "replay",
                [
                    k.task,
                    k.dlq(ten, command),
                    k.ready(ten, command),
                    k.seq,
                    k.avail(ten),
                    k.paused,
                ],
                [
                    now_ms() if now is None else now,
                    ten,
                    qname(ten, command),
                    k.wake,
                    command,
                    by,
                    *shard_ids,
                ],
            )
            replayed.extend(ok)
            missing.extend(gone)
            if ok:
                self.wakeups.post(QueueWork(ten, command, len(ok), s))
        return replayed, missing

    async def dlq_purge(
        self, tenant: str, command: str, ids: list[str] | None, limit: int
    ) -> tuple[list[str], list[str]]:
        """Delete chosen dead tasks, or the oldest ``limit``; returns (purged, not_found)."""
        ten = escape_tenant(tenant)
        by_shard, missing = await self._dlq_select(ten, command, ids, limit)
        purged: list[str] = []
        for s, shard_ids in by_shard.items():
            k = self.keys.shard(s)
            ok, gone = await self.run_script(
                "purge", [k.task, k.payload, k.result, k.dlq(ten, command)], [ten, *shard_ids]
            )
            purged.extend(ok)
            missing.extend(gone)
        return purged, missing
