"""Producer routes: create, read, wait for the result, cancel."""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response, g, request

from codeqd.auth import Principal
from codeqd.context import Context
from codeqd.domain.errors import NotFound
from codeqd.domain.states import TERMINAL
from codeqd.domain.task import (
    MAX_RESULT_WAIT_SECONDS,
    get_wait,
    parse_new_task,
    result_to_wire,
    synthesized_result,
    task_to_wire,
)
from codeqd.domain.tracecontext import trace_context
from codeqd.http._claiming import Watch, unwatched
from codeqd.http._request import PREFIX, app_context, json_body, json_response
from codeqd.http.deps import requires
from codeqd.store import now_ms

bp = Blueprint("producer", __name__, url_prefix=PREFIX)


@bp.post("/tasks")
@requires("producer", rate="create")
async def create_task(principal: Principal) -> Response:
    body = await json_body(allow_empty=False)
    created = await create(app_context(), principal, body, request.headers)
    g.task_id = created.get("id")  # named in the request's log line
    return json_response(created, 202)


async def create(ctx: Context, principal: Principal, body: Any, headers: Any) -> dict[str, Any]:
    """What ``POST /tasks`` does with its JSON body: the created task as the wire has it.
    ``headers`` (anything with a case-insensitive ``get``) may carry a trace context."""
    task = parse_new_task(
        body,
        now_ms=now_ms(),
        default_max_attempts=ctx.config.tasks.default_max_attempts,
        max_depth=ctx.config.limits.max_payload_depth,
        trace=trace_context(headers),
        created_by=principal.sub,
    )
    meta, payload, _created = await ctx.store.create(principal.tenant, task)
    return task_to_wire(meta, payload)


@bp.get("/tasks/<task_id>")
@requires("any")
async def get_task(principal: Principal, task_id: str) -> Response:
    return json_response(await read_task(app_context(), principal, task_id))


async def read_task(ctx: Context, principal: Principal, task_id: str) -> dict[str, Any]:
    """What ``GET /tasks/{id}`` answers: the task as the wire has it."""
    meta, payload = await ctx.store.get(principal.tenant, task_id)
    return task_to_wire(meta, payload)


@bp.get("/tasks/<task_id>/result")
@requires("any")
async def get_result(principal: Principal, task_id: str) -> Response:
    doc = await read_result(app_context(), principal, task_id, request.args.get("waitSeconds"))
    assert doc is not None  # no watch: only the server ends the wait
    return json_response(doc)


async def read_result(
    ctx: Context,
    principal: Principal,
    task_id: str,
    wait_arg: str | None,
    watch: Watch | None = None,
) -> dict[str, Any] | None:
    """What ``GET /tasks/{id}/result`` answers: the task and its Result; 404
    ``result_not_found`` while it has none (codeQ's contract), at once or once
    ``waitSeconds`` (``wait_arg``) ran out, woken by the store. A wait runs inside
    ``watch()``, which may end it early (the client went away): then None."""
    wait = get_wait(wait_arg, "waitSeconds", MAX_RESULT_WAIT_SECONDS, query=True)
    found: tuple[dict[str, Any], str, str | None] | None = None
    if wait == 0:
        found = await ctx.store.get_with_result(principal.tenant, task_id)
    else:
        async with (watch or unwatched)():
            found = await _wait_for_result(ctx, principal, task_id, wait)
        if found is None:
            return None  # the watch ended the wait
    meta, payload, result = found
    # A task that ended without a worker's report (dead-lettered, cancelled) has a
    # Result made from its metadata.
    doc = result_to_wire(result) if result else synthesized_result(meta)
    if doc is None:
        raise NotFound("result not found", code="result_not_found")
    return {"task": task_to_wire(meta, payload), "result": doc}


async def _wait_for_result(
    ctx: Context, principal: Principal, task_id: str, wait: int
) -> tuple[dict[str, Any], str, str | None]:
    """Look until the task is terminal or ``wait`` seconds have passed, woken by the
    store; parked like a long-poll claim (counted, no store connection held)."""
    ingress = ctx.actor_config("ingress")
    deadline = trio.current_time() + wait
    found = None
    with ctx.hub.parked(ingress.max_waiters, "result"):
        while True:
            with ctx.hub.done_waiter(principal.tenant, task_id) as waiter:
                async with ctx.hub.check(deadline) as slot:
                    if slot or found is None:  # the first look happens whatever it costs
                        found = await ctx.store.get_with_result(principal.tenant, task_id)
                meta = found[0]
                if (
                    not slot
                    or meta["status"] in TERMINAL
                    or trio.current_time() >= deadline
                    or ctx.shutting_down.is_set()
                ):
                    return found
                with (
                    trio.move_on_at(ctx.hub.wait_until(deadline, float(ingress.poll_fallback))),
                    ctx.hub.blocked(),
                ):
                    await waiter.event.wait()


@bp.delete("/tasks/<task_id>")
@requires("producer")
async def cancel_task(principal: Principal, task_id: str) -> Response:
    ctx = app_context()
    meta = await ctx.store.cancel(principal.tenant, task_id, by=principal.sub)
    _, payload = await ctx.store.get(principal.tenant, task_id)
    return json_response(task_to_wire(meta, payload))
