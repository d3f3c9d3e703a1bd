"""Worker routes: claim (with long-poll), heartbeat, abandon, nack, result."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Blueprint, Response, request

from codeqd.auth import Principal
from codeqd.domain.artifacts import download_headers, is_stored_name
from codeqd.domain.errors import BadRequest, NotFound
from codeqd.domain.task import require_object, task_to_wire
from codeqd.http import _worker_ops as ops
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
    body = require_object(await json_body())
    return json_response(
        await ops.heartbeat(app_context(), principal, task_id, body, _lease_id(body))
    )


@bp.post("/tasks/<task_id>/abandon")
@requires("worker", "codeq:abandon")
async def abandon(principal: Principal, task_id: str) -> Response:
    body = require_object(await json_body())
    return json_response(
        await ops.abandon(app_context(), principal, task_id, body, _lease_id(body))
    )


@bp.post("/tasks/<task_id>/nack")
@requires("worker", "codeq:nack")
async def nack(principal: Principal, task_id: str) -> Response:
    body = require_object(await json_body())
    return json_response(await ops.nack(app_context(), principal, task_id, body, _lease_id(body)))


@bp.post("/tasks/<task_id>/result")
@requires("worker", "codeq:result")
async def submit_result(principal: Principal, task_id: str) -> Response:
    body = await json_body(allow_empty=False)
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return json_response(await ops.result(app_context(), principal, task_id, body, _lease_id(body)))


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
