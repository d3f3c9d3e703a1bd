"""Worker routes: claim (with long-poll), heartbeat, abandon, nack, result."""

from __future__ import annotations

from typing import Any

import orjson
import trio
from quart import Blueprint, Response, request

from codeqd.artifacts import (
    Inline,
    check_link_url,
    download_headers,
    is_stored_name,
    parse_inline,
    to_store,
)
from codeqd.auth import Principal
from codeqd.domain.errors import BadRequest, Forbidden, NotFound, ValidationError
from codeqd.domain.task import (
    MAX_REASON_LEN,
    MAX_WAIT_SECONDS,
    get_commands,
    get_int,
    get_str,
    require_object,
    rfc3339,
    task_to_wire,
)
from codeqd.http._app import PREFIX, app_context, json_body, json_response
from codeqd.http.deps import requires
from codeqd.store import ClaimedTask

bp = Blueprint("worker", __name__, url_prefix=PREFIX)


def _lease_id(body: dict[str, Any]) -> str | None:
    return parse_lease_id(body.get("leaseId", request.headers.get("X-Lease-Id")))


def parse_lease_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 128:
        raise ValidationError("leaseId", "expected a string of at most 128 characters")
    return value


def _claim_commands(principal: Principal, body: dict[str, Any]) -> list[str] | None:
    """The commands to claim from; None means every command of the tenant."""
    requested = get_commands(body)
    if requested is None:
        if "*" in principal.event_types:
            return None
        if not principal.event_types:
            raise Forbidden("worker token has no eventTypes")
        return list(principal.event_types)
    denied = [c for c in requested if not principal.allows_event(c)]
    if denied:
        raise Forbidden(f"token's eventTypes do not include {', '.join(denied)}", commands=denied)
    return requested


async def claim_tasks(
    principal: Principal, body: dict[str, Any], max_tasks: int
) -> list[ClaimedTask]:
    """Claim up to ``max_tasks``, holding the request up to ``waitSeconds`` for work."""
    ctx = app_context()
    cfg = ctx.config
    commands = _claim_commands(principal, body)
    lease = get_int(
        body, "leaseSeconds", cfg.tasks.default_lease_seconds, 1, cfg.limits.max_lease_seconds
    )
    wait = get_int(body, "waitSeconds", 0, 0, MAX_WAIT_SECONDS) or 0
    assert lease is not None

    async def attempt(shards: set[int] | None = None) -> list[ClaimedTask]:
        return await ctx.store.claim(
            principal.tenant, principal.sub, commands, lease, max_tasks, shards
        )

    if wait == 0 or ctx.shutting_down.is_set():
        return await attempt()
    ingress = ctx.actor_config("ingress")
    deadline = trio.current_time() + wait
    fallback = float(ingress.poll_fallback)
    shards: set[int] | None = None  # the first look and fallback polls visit every shard
    with ctx.hub.parked(ingress.max_waiters, "claim"):
        while True:
            # Register before looking, so a wake-up between the look and the wait is kept.
            with ctx.hub.claim_waiter(principal.tenant, commands) as waiter:
                async with ctx.hub.check(deadline) as slot:
                    tasks = await attempt(shards) if slot else []
                if not slot or tasks or ctx.shutting_down.is_set():
                    return tasks
                if trio.current_time() >= deadline:
                    return tasks
                with trio.move_on_at(ctx.hub.wait_until(deadline, fallback)):
                    await waiter.event.wait()
                # A wake-up names the shard that got work: look only there next time.
                shards = waiter.shards_to_check()
            if ctx.shutting_down.is_set():
                return []


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
    if outcome == "dead_lettered":
        return json_response({"status": "dead_lettered"})
    return json_response({"status": "requeued", "delaySeconds": seconds})


def _artifacts(value: Any, max_bytes: int) -> list[dict[str, Any] | Inline]:
    """``{name, url}`` links as they are; ``{name, contentBase64, contentType}`` decoded
    and size-checked, to be stored with the result (``codeqd.artifacts``)."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 100:
        raise ValidationError("artifacts", "expected a list of at most 100 artifact objects")
    out: list[dict[str, Any] | Inline] = []
    for i, item in enumerate(value):
        where = f"artifacts[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(where, "expected an object")
        name, url = item.get("name"), item.get("url")
        if not isinstance(name, str) or not name or len(name) > 256:
            raise ValidationError(f"{where}.name", "expected a non-empty string")
        if "contentBase64" in item:
            out.append(parse_inline(item, where, max_bytes))
            continue
        if not isinstance(url, str) or not url or len(url) > 2048:
            raise ValidationError(f"{where}.url", "expected a URL string (or contentBase64)")
        check_link_url(url, f"{where}.url")
        out.append({"name": name, "url": url})
    return out


def parse_report(
    body: dict[str, Any], artifact_bytes: int
) -> tuple[str, dict[str, Any] | None, str | None, list[dict[str, Any] | Inline]]:
    status = body.get("status")
    if status not in ("COMPLETED", "FAILED"):
        raise ValidationError("status", "must be 'COMPLETED' or 'FAILED'")
    result = body.get("result")
    error = get_str(body, "error", MAX_REASON_LEN)
    if status == "COMPLETED":
        if not isinstance(result, dict):
            raise ValidationError("result", "a COMPLETED result needs 'result' as a JSON object")
    else:
        if not error:
            raise ValidationError("error", "a FAILED result needs 'error' as a string")
        if result is not None and not isinstance(result, dict):
            raise ValidationError("result", "must be a JSON object when present")
    return status, result, error, _artifacts(body.get("artifacts"), artifact_bytes)


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
        status,  # type: ignore[arg-type]
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
