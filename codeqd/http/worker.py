"""Worker routes: claim (with long-poll), heartbeat, abandon, nack, result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import orjson
from quart import Blueprint, Response, g, request

from codeqd.auth import Principal
from codeqd.context import Context
from codeqd.domain.artifacts import download_headers, is_stored_name
from codeqd.domain.errors import NotFound
from codeqd.domain.task import require_object, task_to_wire
from codeqd.http import _worker_ops as ops
from codeqd.http._claiming import Watch, claim_tasks, parse_lease_id
from codeqd.http._request import PREFIX, app_context, json_body, json_response
from codeqd.http.deps import requires

bp = Blueprint("worker", __name__, url_prefix=PREFIX)


@bp.post("/tasks/claim")
@requires("worker", "codeq:claim", rate="claim")
async def claim(principal: Principal) -> Response:
    task = await claim_one(app_context(), principal, await json_body())
    if task is None:
        empty = Response(b"", status=204)
        del empty.headers["Content-Type"]  # no body, so no type (as codeQ answers)
        return empty
    g.task_id = task.get("id")  # named in the request's log line
    return json_response(task)


async def claim_one(
    ctx: Context, principal: Principal, body: Any, watch: Watch | None = None
) -> dict[str, Any] | None:
    """What ``POST /tasks/claim`` does with its JSON body: the claimed task as the wire
    has it, or None (204) when none came within ``waitSeconds`` (see ``claim_tasks``
    for ``watch``)."""
    tasks = await claim_tasks(ctx, principal, require_object(body), 1, watch)
    return task_to_wire(tasks[0].meta, tasks[0].payload) if tasks else None


class TaskOp(NamedTuple):
    """A worker's report on a task it holds, ``POST /tasks/{id}/<name>``."""

    scope: str  #: the token scope it needs
    run: ops.Operation  #: what it does (``_worker_ops``)
    empty_body_ok: bool


#: The reports by route name: the Quart routes below and the fast path
#: (``_fast``) are both made from this table.
TASK_OPS: dict[str, TaskOp] = {
    "heartbeat": TaskOp("codeq:heartbeat", ops.heartbeat, True),
    "abandon": TaskOp("codeq:abandon", ops.abandon, True),
    "nack": TaskOp("codeq:nack", ops.nack, True),
    "result": TaskOp("codeq:result", ops.result, False),
}


async def task_op(
    ctx: Context,
    principal: Principal,
    name: str,
    task_id: str,
    body: Any,
    lease_header: str | None,
) -> dict[str, Any]:
    """What ``POST /tasks/{id}/<name>`` does with its JSON body; the lease id comes from
    the body's ``leaseId`` or else the ``X-Lease-Id`` header."""
    body = require_object(body)
    lease_id = parse_lease_id(body.get("leaseId", lease_header))
    return await TASK_OPS[name].run(ctx, principal, task_id, body, lease_id)


def _task_op_route(name: str) -> Callable[..., Awaitable[Response]]:
    @requires("worker", TASK_OPS[name].scope)
    async def route(principal: Principal, task_id: str) -> Response:
        body = await json_body(allow_empty=TASK_OPS[name].empty_body_ok)
        lease_header = request.headers.get("X-Lease-Id")
        return json_response(
            await task_op(app_context(), principal, name, task_id, body, lease_header)
        )

    return route


for _name in TASK_OPS:
    bp.add_url_rule(
        f"/tasks/<task_id>/{_name}",
        endpoint=_name,
        view_func=_task_op_route(_name),
        methods=["POST"],
    )


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
