"""Worker routes: claim (with long-poll), heartbeat, abandon, nack, result."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Blueprint, Response, request

from codeqd.auth import Principal
from codeqd.domain.artifacts import download_headers, is_stored_name, to_store
from codeqd.domain.errors import BadRequest, NotFound
from codeqd.domain.report import parse_report
from codeqd.domain.task import (
    MAX_REASON_LEN,
    get_int,
    get_str,
    require_object,
    rfc3339,
    task_to_wire,
)
from codeqd.http._claiming import claim_tasks, parse_lease_id
from codeqd.http._request import PREFIX, app_context, json_body, json_response
from codeqd.http.deps import requires

bp = Blueprint("worker", __name__, url_prefix=PREFIX)


def _lease_id(body: dict[str, Any]) -> str | None:
    return parse_lease_id(body.get("leaseId", request.headers.get("X-Lease-Id")))


@bp.post("/tasks/claim")
@requires("worker", "codeq:claim", rate="claim")
async def claim(principal: Principal) -> Response:
    body = require_object(await json_body())
    tasks = await claim_tasks(principal, body, 1)
    if not tasks:
        return Response(b"", status=204)
    return json_response(task_to_wire(tasks[0].meta, tasks[0].payload))


@bp.post("/tasks/<task_id>/heartbeat")
@requires("worker", "codeq:heartbeat")
async def heartbeat(principal: Principal, task_id: str) -> Response:
    ctx = app_context()
    body = require_object(await json_body())
    extend = get_int(
        body,
        "extendSeconds",
        ctx.config.tasks.default_lease_seconds,
        1,
        ctx.config.limits.max_lease_seconds,
    )
    assert extend is not None
    until = await ctx.store.heartbeat(
        principal.tenant, task_id, principal.sub, _lease_id(body), extend
    )
    return json_response({"ok": True, "leaseUntil": rfc3339(until)})


@bp.post("/tasks/<task_id>/abandon")
@requires("worker", "codeq:abandon")
async def abandon(principal: Principal, task_id: str) -> Response:
    body = require_object(await json_body())
    await app_context().store.abandon(principal.tenant, task_id, principal.sub, _lease_id(body))
    return json_response({"status": "requeued"})


@bp.post("/tasks/<task_id>/nack")
@requires("worker", "codeq:nack")
async def nack(principal: Principal, task_id: str) -> Response:
    ctx = app_context()
    body = require_object(await json_body())
    delay = get_int(body, "delaySeconds", None, 0, 365 * 86400)
    reason = get_str(body, "reason", MAX_REASON_LEN)
    outcome, seconds = await ctx.store.nack(
        principal.tenant, task_id, principal.sub, _lease_id(body), delay, reason
    )
    # codeQ's answers: "dlq" when the task's attempts ran out (delaySeconds 0).
    status = "dlq" if outcome == "dead_lettered" else "requeued"
    return json_response({"status": status, "delaySeconds": seconds})


@bp.post("/tasks/<task_id>/result")
@requires("worker", "codeq:result")
async def submit_result(principal: Principal, task_id: str) -> Response:
    body = await json_body(allow_empty=False)
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    ctx = app_context()
    status, result, error, artifacts = parse_report(body, ctx.config.limits.artifact_bytes)
    wire, inline = to_store(task_id, PREFIX, artifacts)
    _, doc = await ctx.store.report(
        principal.tenant,
        task_id,
        principal.sub,
        _lease_id(body),
        status,
        result,
        error,
        wire,
        inline=inline,
    )
    return json_response(doc)


@bp.get("/tasks/<task_id>/artifacts/<name>")
@requires("any")
async def get_artifact(principal: Principal, task_id: str, name: str) -> Response:
    """An inline artifact of the task's result; 404 like a missing task for another tenant."""
    store = app_context().store
    _, _, result = await store.get_with_result(principal.tenant, task_id)
    doc = orjson.loads(result) if result else {}
    url = f"{PREFIX}/tasks/{task_id}/artifacts/{name}"
    entry = next((a for a in doc.get("artifacts") or () if a.get("url") == url), None)
    content = (
        await store.artifact(principal.tenant, task_id, name)
        if entry and is_stored_name(name)
        else None
    )
    if entry is None or content is None:
        raise NotFound(f"task {task_id} has no artifact {name!r}", code="artifact_not_found")
    return Response(
        content,
        content_type=entry.get("contentType", "application/octet-stream"),
        headers=download_headers(str(entry.get("name") or name)),
    )
