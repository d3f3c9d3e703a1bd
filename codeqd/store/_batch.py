"""Batch transitions: many tasks per script call, one call per shard touched.

``create_batch`` runs ``lua/create_batch.lua`` and ``report_batch`` runs
``lua/result_batch.lua``; each item is applied exactly as its single-task
script would apply it (same checks, same refusals), atomically per shard.
Shards are visited concurrently; a cancelled or failed batch may have been
applied on some shards and not others — every item is still in exactly one
consistent state, and idempotency keys make a retried create batch safe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio

from codeqd import metrics
from codeqd.domain.errors import CodeqError, TaskNotFound
from codeqd.domain.ids import is_task_id, new_task_id, shard_of
from codeqd.domain.records import new_meta, result_doc
from codeqd.domain.states import refusal_error
from codeqd.domain.task import NewTask
from codeqd.store._hints import QueueWork, TaskDone
from codeqd.store._keys import escape_tenant
from codeqd.store._store import (
    Meta,
    Transitions,
    count_reported,
    now_ms,
)

#: One created (or idempotently found) task: (meta, payload JSON, created).
Created = tuple[Meta, str, bool]


@dataclass(frozen=True)
class Report:
    """One item of a batch of results, validated like a single result."""

    task_id: str
    lease_id: str | None
    status: str
    result: dict[str, Any] | None
    error: str | None
    artifacts: list[dict[str, Any]]
    #: Inline artifact contents by stored name, written with the result.
    inline: list[tuple[str, bytes]] = field(default_factory=list)


async def _per_shard(store: Transitions, groups: dict[int, list[int]], run: Any) -> None:
    """``run(shard, items)`` for each shard's items, in calls of at most
    ``store.script_items`` items (a script's work is bounded whatever the batch size,
    so other clients' calls run between them); shards concurrently."""
    size = store.config.store.script_items

    async def chunks(s: int, idx: list[int]) -> None:
        for i in range(0, len(idx), size):
            await run(s, idx[i : i + size])

    if len(groups) == 1:
        ((s, idx),) = groups.items()
        await chunks(s, idx)
        return
    async with trio.open_nursery() as nursery:
        for s, idx in groups.items():
            nursery.start_soon(chunks, s, idx)


async def create_batch(
    store: Transitions, tenant: str, tasks: Sequence[NewTask], shard: int | None = None
) -> list[Created]:
    """Create ``tasks`` for ``tenant``; results in the same order.

    Tasks without an idempotency key go to one shard, rotating per batch (one
    script call spreads the load across batches, and a batch claim finds them
    together), or to ``shard`` when given; a task with a key goes to the key's shard,
    as a single create would.
    """
    ten = escape_tenant(tenant)
    rotating = store._pick_shard() if shard is None else shard
    groups: dict[int, list[int]] = {}
    for i, task in enumerate(tasks):
        key = task.idempotency_key
        s = rotating if key is None else store.idempotency_shard(ten, key)
        groups.setdefault(s, []).append(i)
    out: list[Created | None] = [None] * len(tasks)
    now = now_ms()

    async def run(s: int, idx: list[int]) -> None:
        k = store.keys.shard(s)
        keys = [
            k.task,
            k.payload,
            k.seq,
            k.delayed,
            k.counts,
            k.queues,
            k.cmds(ten),
            k.avail(ten),
            k.paused,
        ]
        slot: dict[str, int] = {}

        def key_index(name: str) -> int:
            if name not in slot:
                keys.append(name)
                slot[name] = len(keys)
            return slot[name]

        args: list[Any] = [now, k.wake, ten]
        metas: list[Meta] = []
        for i in idx:
            task = tasks[i]
            meta = new_meta(new_task_id(s), tenant, task, now)
            metas.append(meta)
            idem = key_index(k.idem(ten, task.idempotency_key)) if task.idempotency_key else 0
            args += [
                meta["id"],
                orjson.dumps(meta),
                task.payload,
                task.run_at_ms,
                task.priority,
                store.idempotency_ttl_ms(task),
                task.command,
                key_index(k.ready(ten, task.command)),
                idem,
            ]
        replies = await store.run_script("create_batch", keys, args)
        created = []
        ready: Counter[str] = Counter()
        for i, meta, reply in zip(idx, metas, replies, strict=True):
            if reply[0] == 1:
                out[i] = (meta, tasks[i].payload.decode(), True)
                created.append((meta["command"],))
                if tasks[i].run_at_ms <= now:
                    ready[meta["command"]] += 1
            else:
                out[i] = (orjson.loads(reply[1]), reply[2] or "{}", False)
        metrics.inc_each(metrics.TASK_CREATED, created)
        for cmd, n in ready.items():
            store.wakeups.post(QueueWork(ten, cmd, n, s))

    await _per_shard(store, groups, run)
    return out  # type: ignore[return-value]


async def report_batch(
    store: Transitions, tenant: str, worker_id: str, reports: Sequence[Report]
) -> list[tuple[Meta, dict[str, Any]] | CodeqError]:
    """Apply the lease holder's results; per item (meta, Result) or the refusal, in order."""
    ten = escape_tenant(tenant)
    out: list[tuple[Meta, dict[str, Any]] | CodeqError | None] = [None] * len(reports)
    groups: dict[int, list[int]] = {}
    for i, rep in enumerate(reports):
        if is_task_id(rep.task_id):
            groups.setdefault(shard_of(rep.task_id, store.shards), []).append(i)
        else:
            out[i] = TaskNotFound(rep.task_id)
    now = now_ms()

    async def run(s: int, idx: list[int]) -> None:
        k = store.keys.shard(s)
        args: list[Any] = [0, store.keys.done_channel, ten, worker_id]  # 0: store's clock
        docs = []
        for i in idx:
            rep = reports[i]
            doc = result_doc(rep.task_id, rep.status, rep.result, rep.error, rep.artifacts, now)
            docs.append(doc)
            args += [
                rep.task_id,
                rep.lease_id or "",
                rep.status,
                orjson.dumps(doc),
                rep.error or "",
                len(rep.inline),
            ]
            for name, content in rep.inline:
                args += [name, content]
        replies = await store.run_script(
            "result_batch",
            [k.task, k.result, k.leases, k.done, k.counts, k.outbox, k.artifacts],
            args,
        )
        reported = []
        done: list[tuple[str, str]] = []
        callback = False
        for i, doc, reply in zip(idx, docs, replies, strict=True):
            if reply[0] == "OK":
                meta = orjson.loads(reply[1])
                reported.append((meta, reports[i].status))
                out[i] = (meta, doc)
                done.append((ten, reports[i].task_id))
                callback = callback or bool(meta.get("webhook"))
            else:
                out[i] = refusal_error(reply[0], reports[i].task_id, reply[1:])
        count_reported(reported, now)
        if done:
            store.wakeups.post(TaskDone(tuple(done), callback))

    if groups:
        await _per_shard(store, groups, run)
    return out  # type: ignore[return-value]


__all__ = ["Created", "Report", "create_batch", "report_batch"]
