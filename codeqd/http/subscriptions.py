"""Worker subscription routes: create, heartbeat, delete (tenant-scoped)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from codeqd.auth import Principal
from codeqd.domain.errors import NotFound
from codeqd.domain.subscription import parse_heartbeat, parse_new_subscription
from codeqd.domain.task import rfc3339
from codeqd.http._request import PREFIX, app_context, json_body, json_response
from codeqd.http.deps import requires
from codeqd.store import new_subscription_id, now_ms

bp = Blueprint("subscriptions", __name__, url_prefix=f"{PREFIX}/workers/subscriptions")


def _not_found(sub_id: str) -> NotFound:
    return NotFound(f"subscription {sub_id!r} not found", code="subscription_not_found")


def _wire(doc: dict[str, Any]) -> dict[str, Any]:
    return {"subscriptionId": doc["id"], "expiresAt": rfc3339(doc["expiresAt"])}


@bp.post("")
@requires("worker", "codeq:subscribe")
async def create(principal: Principal) -> Response:
    ctx = app_context()
    hooks = ctx.config.webhooks
    new = parse_new_subscription(
        await json_body(allow_empty=False),
        token_event_types=principal.event_types,
        worker_group=principal.worker_group,
        default_min_interval=int(hooks.subscription_min_interval),
        default_ttl=int(hooks.subscription_ttl),
        max_ttl=int(hooks.subscription_max_ttl),
    )
    doc = {
        "id": new_subscription_id(),
        "tenantId": principal.tenant,
        "workerId": principal.sub,
        "callbackUrl": new.callback_url,
        "eventTypes": new.event_types,
        "deliveryMode": new.delivery_mode,
        "groupId": new.group_id,
        "minIntervalSeconds": new.min_interval_seconds,
        "createdAt": now_ms(),
    }
    stored = await ctx.store.subscriptions.put(
        principal.tenant,
        doc,
        new.ttl_seconds * 1000,
        max_per_worker=hooks.subscription_max_per_worker,
        max_per_tenant=hooks.subscription_max_per_tenant,
    )
    return json_response(_wire(stored))


@bp.post("/<sub_id>/heartbeat")
@requires("worker")
async def heartbeat(principal: Principal, sub_id: str) -> Response:
    ctx = app_context()
    ttl = parse_heartbeat(await json_body(), max_ttl=int(ctx.config.webhooks.subscription_max_ttl))
    stored = await ctx.store.subscriptions.renew(principal.tenant, sub_id, ttl * 1000)
    if stored is None:
        raise _not_found(sub_id)
    return json_response(_wire(stored))


@bp.delete("/<sub_id>")
@requires("worker")
async def delete(principal: Principal, sub_id: str) -> Response:
    if not await app_context().store.subscriptions.delete(principal.tenant, sub_id):
        raise _not_found(sub_id)
    return Response(b"", status=204)
