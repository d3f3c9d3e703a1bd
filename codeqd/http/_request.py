"""What every route shares: the API prefix, the app's context, the JSON body and the
JSON response, and the request id. Route modules import these from here, never from
the app factory (``_app``) or from one another.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import orjson
import structlog
from quart import Response, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.exceptions import RequestTimeout as BodyTimeout

from codeqd import metrics, tracing
from codeqd.auth import Principal
from codeqd.context import Context
from codeqd.domain.errors import BadRequest, CodeqError
from codeqd.domain.task import refuse_inexact_integers
from codeqd.http._errors import (
    HeadersTooLarge,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)

PREFIX = "/v1/codeq"
_QUIET_ROUTES = frozenset(("/healthz", "/readyz", "/metrics"))

log = structlog.get_logger("codeqd.http")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def error_response(err: CodeqError) -> Response:
    """The one rendering of an error: its JSON body, its status and its headers."""
    return json_response(err.body(), err.status, err.headers())


def app_context() -> Context:
    return current_app.codeqd  # type: ignore[attr-defined,no-any-return]


def request_id(headers: Any) -> str:
    """The client's ``X-Request-Id`` when it is a safe token (1-128 characters of
    ``[A-Za-z0-9._:-]``), else a fresh one: it goes into logs and response headers."""
    rid = headers.get("X-Request-Id", "")
    # 32 random hex digits, as uuid4().hex gave: 0.8 us against its 4 us on every
    # request that brings no id of its own.
    return rid if _REQUEST_ID_RE.match(rid) else os.urandom(16).hex()


def mimetype(content_type: str | None) -> str:
    """The media type of a ``Content-Type`` value, lowercased, parameters dropped."""
    return (content_type or "").partition(";")[0].strip().lower()


def body_too_large(ctx: Context) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body larger than {ctx.config.limits.body_bytes} bytes")


def body_too_slow(ctx: Context) -> RequestTimeout:
    seconds = float(ctx.config.actors.ingress.request_timeout)
    return RequestTimeout(
        f"request body not received within actors.ingress.request_timeout ({seconds:g} s)"
    )


def parse_json_body(data: bytes | str, media_type: str, *, allow_empty: bool) -> Any:
    """A request body as JSON: 415 for a non-JSON media type, 400 for malformed JSON or
    an integer JSON cannot carry exactly; an empty body is ``{}`` where allowed."""
    if not data or not data.strip():
        if allow_empty:
            return {}
        raise BadRequest("request body is required")
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"expected Content-Type: application/json, got {media_type or 'none'!r}"
        )
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"malformed JSON: {e}", code="malformed_json") from None
    refuse_inexact_integers(data)
    return body


def headers_size(items: Any, limit: int) -> None:
    """431 when the request's complete headers pass ``limit`` bytes (hypercorn bounds
    only headers still arriving)."""
    size = sum(len(k) + len(v) + 4 for k, v in items)
    if size > limit:
        raise HeadersTooLarge(f"request headers larger than {limit} bytes")


async def json_body(*, allow_empty: bool = True) -> Any:
    """The request's JSON body (``parse_json_body``), read within the body limits."""
    try:
        g.body_read = True
        data = await request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise body_too_large(app_context()) from None
    except BodyTimeout:
        raise body_too_slow(app_context()) from None
    return parse_json_body(data, mimetype(request.mimetype), allow_empty=allow_empty)


def record_request(
    method: str,
    rule: str,
    status: int,
    started: float,
    rid: str | None,
    principal: Principal | None,
    task_id: str | None,
) -> None:
    """What every answered request leaves behind: its span's name, its latency in
    ``codeq_http_request_duration_seconds`` and the ``http.request`` log line."""
    tracing.name_request(method, rule)
    elapsed = time.perf_counter() - started
    metrics.observe(metrics.HTTP_DURATION, elapsed, method, rule, str(status))
    if rule not in _QUIET_ROUTES:
        log.info(
            "http.request",
            method=method,
            route=rule,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
            request_id=rid,
            tenant=principal.tenant if principal else None,
            task_id=task_id,
        )
