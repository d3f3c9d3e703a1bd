"""Admin routes: queue stats, dead-letter queue, pause/resume, cleanup."""

from __future__ import annotations

from dataclasses import asdict

from quart import Blueprint, Response, request

from codeqd.auth import ALL_TENANTS, Principal
from codeqd.domain.errors import ValidationError
from codeqd.domain.records import queue_stats_wire
from codeqd.domain.task import (
    check_command,
    get_int,
    parse_rfc3339,
    require_object,
    rfc3339,
    task_to_wire,
)
from codeqd.http._request import PREFIX, app_context, json_body, json_response
from codeqd.http.deps import requires
from codeqd.store import now_ms

bp = Blueprint("admin", __name__, url_prefix=f"{PREFIX}/admin")


@bp.get("/queues")
@requires("admin")
async def list_queues(principal: Principal) -> Response:
    """A page of queues (``?limit``, default 100, and ``?cursor`` from the previous
    page's ``X-Next-Cursor`` header); the body stays codeQ's plain list."""
    limit = _query_int("limit", 100, 1, 1000)
    cursor = request.args.get("cursor", "")
    if cursor:
        check_command(cursor, "cursor")
    stats, next_cursor = await app_context().store.list_queues(principal.tenant, limit, cursor)
    headers = {"X-Next-Cursor": next_cursor} if next_cursor else None
    return json_response([queue_stats_wire(**asdict(s)) for s in stats], headers=headers)


@bp.get("/queues/<command>")
@bp.get("/queues/<command>/stats")
@requires("admin")
async def queue_stats(principal: Principal, command: str) -> Response:
    stats = await app_context().store.queue_stats(principal.tenant, check_command(command))
    return json_response(queue_stats_wire(**asdict(stats)))


def _query_int(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(name, "expected an integer") from None
    if not lo <= value <= hi:
        raise ValidationError(name, f"must be between {lo} and {hi}")
    return value


@bp.get("/queues/<command>/dlq")
@requires("admin")
async def dlq_list(principal: Principal, command: str) -> Response:
    limit = _query_int("limit", 50, 1, 1000)
    cursor = _query_int("cursor", 0, 0, 2**62)
    items, next_cursor = await app_context().store.dlq_page(
        principal.tenant, check_command(command), limit, cursor
    )
    return json_response(
        {
            "tasks": [task_to_wire(meta, payload) for meta, payload in items],
            "nextCursor": str(next_cursor) if next_cursor is not None else None,
        }
    )


def _dlq_selection(body: dict[str, object]) -> tuple[list[str] | None, int]:
    ids = body.get("ids")
    if ids is not None and (
        not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > 10_000
    ):
        raise ValidationError("ids", "expected a list of task id strings (at most 10000)")
    return ids, get_int(body, "limit", 100, 1, 10_000) or 100


@bp.post("/queues/<command>/dlq/replay")
@requires("admin")
async def dlq_replay(principal: Principal, command: str) -> Response:
    ids, limit = _dlq_selection(require_object(await json_body()))
    replayed, missing = await app_context().store.dlq_replay(
        principal.tenant, check_command(command), ids, limit, by=principal.sub
    )
    return json_response({"replayed": len(replayed), "ids": replayed, "notFound": missing})


@bp.post("/queues/<command>/dlq/purge")
@requires("admin")
async def dlq_purge(principal: Principal, command: str) -> Response:
    ids, limit = _dlq_selection(require_object(await json_body()))
    purged, missing = await app_context().store.dlq_purge(
        principal.tenant, check_command(command), ids, limit
    )
    return json_response({"purged": len(purged), "ids": purged, "notFound": missing})


@bp.post("/queues/<command>/pause")
@requires("admin")
async def pause(principal: Principal, command: str) -> Response:
    await app_context().store.set_paused(principal.tenant, check_command(command), True)
    return json_response({"command": command, "paused": True})


@bp.post("/queues/<command>/resume")
@requires("admin")
async def resume(principal: Principal, command: str) -> Response:
    await app_context().store.set_paused(principal.tenant, check_command(command), False)
    return json_response({"command": command, "paused": False})


@bp.post("/tasks/cleanup")
@requires("admin", rate="cleanup", all_tenants=True)
async def cleanup(principal: Principal) -> Response:
    ctx = app_context()
    body = require_object(await json_body())
    before = now_ms() - int(ctx.config.tasks.retention * 1000)
    if body.get("before") is not None:
        if not isinstance(body["before"], str):
            raise ValidationError("before", "expected an RFC 3339 timestamp string")
        before = parse_rfc3339(body["before"], "before")
    limit = get_int(body, "limit", 1000, 1, 100_000) or 1000
    # An all-tenants admin without ?tenant= cleans every tenant.
    tenant = None if principal.tenant == ALL_TENANTS else principal.tenant
    deleted = await ctx.store.cleanup(before, limit, tenant)
    return json_response({"deleted": deleted, "before": rfc3339(before), "limit": limit})
