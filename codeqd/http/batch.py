"""Batch routes (SPEC extensions): create, claim and report many tasks per request.

Each item is validated exactly as its single-task route validates it, and an
item that fails gets its error in its place (``{"error", "code", "details"}``)
without failing the rest; the store applies each batch with one script call
per shard touched (``codeqd/store/_batch.py``).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from codeqd.auth import Principal
from codeqd.domain.errors import CodeqError, ValidationError
from codeqd.domain.task import NewTask, get_int, parse_new_task, require_object, task_to_wire
from codeqd.domain.tracecontext import trace_context
from codeqd.http import _worker_ops as ops
from codeqd.http._claiming import claim_tasks, parse_lease_id
from codeqd.http._request import PREFIX, app_context, json_body, json_response
from codeqd.http.deps import charge, requires
from codeqd.store import now_ms

bp = Blueprint("batch", __name__, url_prefix=PREFIX)


def _items(body: Any, name: str) -> list[Any]:
    body = require_object(body)
    items = body.get(name)
    limit = app_context().config.limits.batch_max
    if not isinstance(items, list):
        raise ValidationError(name, "expected a list")
    if len(items) > limit:
        raise ValidationError(
            name, f"at most {limit} items per batch (limits.batch_max)", limit=limit
        )
    return items


def _item_error(err: CodeqError, **extra: Any) -> dict[str, Any]:
    return {**extra, "error": err.message, "code": err.code, "details": err.details}


@bp.post("/tasks/batch")
@requires("producer")
async def create_tasks(principal: Principal) -> Response:
    ctx = app_context()
    items = _items(await json_body(allow_empty=False), "tasks")
    await charge(ctx, principal, "create", len(items))  # one token per task, as POST /tasks
    now = now_ms()
    trace = trace_context(request.headers)  # every task of the batch joins the trace
    parsed: list[NewTask | CodeqError] = []
    for item in items:
        try:
            parsed.append(
                parse_new_task(
                    item,
                    now_ms=now,
                    default_max_attempts=ctx.config.tasks.default_max_attempts,
                    max_depth=ctx.config.limits.max_payload_depth,
                    trace=trace,
                    created_by=principal.sub,
                )
            )
        except CodeqError as e:
            parsed.append(e)
    valid = [p for p in parsed if isinstance(p, NewTask)]
    created = iter(await ctx.store.create_batch(principal.tenant, valid) if valid else [])
    out = []
    for p in parsed:
        if isinstance(p, CodeqError):
            out.append(_item_error(p))
        else:
            meta, payload, _ = next(created)
            out.append(task_to_wire(meta, payload))
    return json_response({"tasks": out}, 202)


@bp.post("/tasks/claim/batch")
@requires("worker", "codeq:claim")
async def claim_batch(principal: Principal) -> Response:
    ctx = app_context()
    body = require_object(await json_body(allow_empty=False))
    if body.get("maxTasks") is None:
        raise ValidationError("maxTasks", "is required")
    max_tasks = get_int(body, "maxTasks", None, 1, ctx.config.limits.batch_max)
    assert max_tasks is not None
    # Charged up front for maxTasks: the claim cannot be refused once it has leased
    # tasks, and a refund of what was not found would cost a second store round trip.
    await charge(ctx, principal, "claim", max_tasks)
    tasks = await claim_tasks(ctx, principal, body, max_tasks)
    return json_response({"tasks": [task_to_wire(t.meta, t.payload) for t in tasks]})


def _result_item(item: Any) -> tuple[str, dict[str, Any], str | None]:
    """One element of ``results``: (task id, the element as the body, lease id)."""
    item = require_object(item, "a result")
    task_id = item.get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise ValidationError("taskId", "expected the task id as a string")
    return task_id, item, parse_lease_id(item.get("leaseId"))


@bp.post("/tasks/batch/results")
@requires("worker", "codeq:result")
async def submit_results(principal: Principal) -> Response:
    items = _items(await json_body(allow_empty=False), "results")
    parsed: list[tuple[str, dict[str, Any], str | None] | CodeqError] = []
    for item in items:
        try:
            parsed.append(_result_item(item))
        except CodeqError as e:
            parsed.append(e)
    valid = [p for p in parsed if not isinstance(p, CodeqError)]
    # The same step as a worker stream's frame of results (one store call per shard).
    applied = iter(await ops.results(app_context(), principal, valid) if valid else [])
    out = []
    for item, p in zip(items, parsed, strict=True):
        outcome = p if isinstance(p, CodeqError) else next(applied)
        if isinstance(outcome, CodeqError):
            task_id = item.get("taskId") if isinstance(item, dict) else None
            out.append(_item_error(outcome, taskId=task_id if isinstance(task_id, str) else None))
        else:
            out.append(outcome)
    return json_response({"results": out})
