"""Liveness, readiness and metrics: no auth (bind /metrics privately in production)."""

from __future__ import annotations

from quart import Blueprint, Response

from codeqd import metrics
from codeqd.http._request import app_context, json_response

bp = Blueprint("health", __name__)


@bp.get("/healthz")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@bp.get("/readyz")
async def readyz() -> Response:
    ctx = app_context()
    if ctx.shutting_down.is_set():
        return json_response({"status": "stopping"}, 503, {"Retry-After": "1"})
    if await ctx.store.ping():
        return json_response({"status": "ready"})
    return json_response({"status": "store_unavailable"}, 503, {"Retry-After": "1"})


@bp.get("/metrics")
async def prometheus() -> Response:
    return Response(metrics.render(), content_type=metrics.CONTENT_TYPE)
