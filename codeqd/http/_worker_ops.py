"""What a worker's heartbeat, abandon, nack and result do, whichever door they came in
by: the HTTP routes (``worker``) and the worker streams (``streams``) both call these,
so the validation, the store step and the answer's body are one and the same.

Each takes the caller's principal, the task id, the message body (a JSON object) and
the lease id the worker named, and returns the body of the 200 answer; a refusal is
raised as the ``CodeqError`` the HTTP route renders.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from codeqd.auth import Principal
from codeqd.context import Context
from codeqd.domain.artifacts import to_store
from codeqd.domain.errors import CodeqError
from codeqd.domain.report import parse_report
from codeqd.domain.task import MAX_REASON_LEN, get_int, get_str, rfc3339
from codeqd.http._request import PREFIX
from codeqd.store import Report

#: The shape every one of them has (``worker.TASK_OPS`` maps routes to them).
Operation = Callable[
    [Context, Principal, str, dict[str, Any], str | None], Awaitable[dict[str, Any]]
]


async def heartbeat(
    ctx: Context, principal: Principal, task_id: str, body: dict[str, Any], lease_id: str | None
) -> dict[str, Any]:
    extend = get_int(
        body,
        "extendSeconds",
        ctx.config.tasks.default_lease_seconds,
        1,
        ctx.config.limits.max_lease_seconds,
    )
    assert extend is not None
    until = await ctx.store.heartbeat(principal.tenant, task_id, principal.sub, lease_id, extend)
    return {"ok": True, "leaseUntil": rfc3339(until)}


async def abandon(
    ctx: Context, principal: Principal, task_id: str, body: dict[str, Any], lease_id: str | None
) -> dict[str, Any]:
    await ctx.store.abandon(principal.tenant, task_id, principal.sub, lease_id)
    return {"status": "requeued"}


async def nack(
    ctx: Context, principal: Principal, task_id: str, body: dict[str, Any], lease_id: str | None
) -> dict[str, Any]:
    delay = get_int(body, "delaySeconds", None, 0, 365 * 86400)
    reason = get_str(body, "reason", MAX_REASON_LEN)
    outcome, seconds = await ctx.store.nack(
        principal.tenant, task_id, principal.sub, lease_id, delay, reason
    )
    # codeQ's answers: "dlq" when the task's attempts ran out (delaySeconds 0).
    status = "dlq" if outcome == "dead_lettered" else "requeued"
    return {"status": status, "delaySeconds": seconds}


async def result(
    ctx: Context, principal: Principal, task_id: str, body: dict[str, Any], lease_id: str | None
) -> dict[str, Any]:
    status, res, error, artifacts = parse_report(body, ctx.config.limits.artifact_bytes)
    wire, inline = to_store(task_id, PREFIX, artifacts)
    _, doc = await ctx.store.report(
        principal.tenant,
        task_id,
        principal.sub,
        lease_id,
        status,
        res,
        error,
        wire,
        inline=inline,
    )
    return doc


async def results(
    ctx: Context,
    principal: Principal,
    items: Sequence[tuple[str, dict[str, Any], str | None]],
) -> list[dict[str, Any] | CodeqError]:
    """``result`` for each of ``items`` (task id, body, lease id), all in one store step
    per shard: per item the answer's body, or its refusal. A frame of a worker stream's
    results comes this way (the items of one frame share a script call, as a batch does)."""
    out: list[dict[str, Any] | CodeqError | None] = [None] * len(items)
    reports: list[Report] = []
    where: list[int] = []
    for i, (task_id, body, lease_id) in enumerate(items):
        try:
            status, res, error, artifacts = parse_report(body, ctx.config.limits.artifact_bytes)
            wire, inline = to_store(task_id, PREFIX, artifacts)
        except CodeqError as err:
            out[i] = err
            continue
        reports.append(Report(task_id, lease_id, status, res, error, wire, inline))
        where.append(i)
    if reports:
        applied = await ctx.store.report_batch(principal.tenant, principal.sub, reports)
        for i, outcome in zip(where, applied, strict=True):
            out[i] = outcome if isinstance(outcome, CodeqError) else outcome[1]
    return [o for o in out if o is not None]
