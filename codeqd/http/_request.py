"""What every route shares: the API prefix, the app's context, the JSON body and the
JSON response, and the request id. Route modules import these from here, never from
the app factory (``_app``) or from one another.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
from quart import Response, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.exceptions import RequestTimeout as BodyTimeout

from codeqd.context import Context
from codeqd.domain.errors import BadRequest, CodeqError
from codeqd.domain.task import refuse_inexact_integers
from codeqd.http._errors import PayloadTooLarge, RequestTimeout, UnsupportedMediaType

PREFIX = "/v1/codeq"
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
    return rid if _REQUEST_ID_RE.match(rid) else uuid.uuid4().hex


async def json_body(*, allow_empty: bool = True) -> Any:
    """The request's JSON body; 415 for a non-JSON content type, 413 past the limit."""
    try:
        g.body_read = True
        data = await request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(
            f"request body larger than {app_context().config.limits.body_bytes} bytes"
        ) from None
    except BodyTimeout:
        seconds = float(app_context().config.actors.ingress.request_timeout)
        raise RequestTimeout(
            f"request body not received within actors.ingress.request_timeout ({seconds:g} s)"
        ) from None
    if not data or not data.strip():
        if allow_empty:
            return {}
        raise BadRequest("request body is required")
    ctype = (request.mimetype or "").lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(
            f"expected Content-Type: application/json, got {request.mimetype or 'none'!r}"
        )
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"malformed JSON: {e}", code="malformed_json") from None
    refuse_inexact_integers(data)
    return body
