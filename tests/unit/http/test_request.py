"""Pure helpers of the HTTP layer: the request id, the one error rendering, and the
errors only the HTTP layer raises."""

from __future__ import annotations

import re

import orjson
import pytest

from codeqd.domain.errors import CodeqError, RateLimited, Unauthorized, ValidationError
from codeqd.domain.states import REFUSALS, refusal_error
from codeqd.http._errors import (
    HeadersTooLarge,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from codeqd.http._request import error_response, request_id


@pytest.mark.parametrize("rid", ["abc", "req-1.2:3_x", "A" * 128])
def test_a_safe_request_id_is_kept(rid: str) -> None:
    assert request_id({"X-Request-Id": rid}) == rid


@pytest.mark.parametrize("rid", ["", "A" * 129, "has space", "new\nline", "é", "a/b", "<x>"])
def test_an_unsafe_or_missing_request_id_is_replaced(rid: str) -> None:
    for headers in ({"X-Request-Id": rid}, {}):
        fresh = request_id(headers)
        assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    assert request_id({}) != request_id({})


async def render(err: CodeqError) -> tuple[int, dict[str, str], dict[str, object]]:
    response = error_response(err)
    body = orjson.loads(await response.get_data())
    assert response.content_type == "application/json"
    return response.status_code, dict(response.headers), body


async def test_an_error_renders_as_error_code_details() -> None:
    status, _, body = await render(ValidationError("priority", "must be between 0 and 9"))
    assert status == 400
    assert body == {
        "error": "priority: must be between 0 and 9",
        "code": "validation_error",
        "details": {"field": "priority"},
    }


async def test_an_errors_headers_go_out() -> None:
    _, headers, _ = await render(Unauthorized("no token"))
    assert headers["WWW-Authenticate"] == 'Bearer realm="codeq"'
    status, headers, body = await render(RateLimited("slow down", retry_after=1.2, scope="s"))
    assert (status, headers["Retry-After"], body["retryAfterSeconds"]) == (429, "2", 2)


@pytest.mark.parametrize(
    ("cls", "status", "code", "closes"),
    [
        (PayloadTooLarge, 413, "payload_too_large", True),
        (RequestTimeout, 408, "request_timeout", True),
        (HeadersTooLarge, 431, "headers_too_large", True),
        (UnsupportedMediaType, 415, "unsupported_media_type", False),
    ],
)
async def test_http_errors(cls: type[CodeqError], status: int, code: str, closes: bool) -> None:
    got_status, headers, body = await render(cls("why"))
    assert (got_status, body) == (status, {"error": "why", "code": code, "details": {}})
    assert (headers.get("Connection") == "close") is closes


@pytest.mark.parametrize("code", sorted(REFUSALS))
async def test_each_refusal_reaches_the_client_as_documented(code: str) -> None:
    status, _, body = await render(refusal_error(code, "t-1", ["PENDING"]))
    assert (status, body["code"]) == (REFUSALS[code].status, REFUSALS[code].code)
