"""schemathesis against the served OpenAPI document: cases generated from every documented
operation (valid and invalid), sent to the real app with a token of the right kind.
Never a 5xx, every status is documented, every error is a JSON body.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from codeqd.http.openapi import DOCUMENT
from tests.integration.auth.live import LiveServer, live_fixture  # noqa: F401 - provides `live`

SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = [
    op
    for result in SCHEMA.get_all_operations()
    if (op := result.ok()) is not None  # type: ignore[union-attr]
]
TOKEN_FOR = {"producer": "producer", "any": "producer", "worker": "worker", "admin": "admin"}


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=10) as c:
        yield c


def cases(mode: GenerationMode) -> st.SearchStrategy[Any]:
    return st.one_of([op.as_strategy(generation_mode=mode) for op in OPERATIONS])


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def check(live: LiveServer, client: httpx.Client, case: Any) -> None:
    op = case.operation
    audience = op.definition.raw.get("x-codeq-audience", "none")
    kwargs = case.as_transport_kwargs(base_url=live.base)
    headers = {
        k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"
    }
    if audience in TOKEN_FOR:
        headers["Authorization"] = f"Bearer {live.tokens[TOKEN_FOR[audience]]}"
    # Keep examples short: no long-polls. JSON Schema counts 29.0 as an integer, and so
    # does the server, so any number (or numeric string) becomes 0.
    params = kwargs.get("params") or {}
    if isinstance(params, dict) and _numeric(params.get("waitSeconds")):
        params["waitSeconds"] = "0"
    body = kwargs.get("json")
    if isinstance(body, dict) and _numeric(body.get("waitSeconds")):
        body["waitSeconds"] = 0
    try:
        r = client.request(
            kwargs["method"],
            kwargs["url"],
            headers=headers,
            params=params,
            json=body if "json" in kwargs else None,
            content=kwargs.get("data") if "json" not in kwargs else None,
        )
    except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
        return  # the client refused to send it
    assert r.status_code < 500, (op.method, op.path, r.text)
    documented = set(op.definition.raw["responses"])
    # 404 route_not_found/405: a generated path segment can make the URL match no route.
    assert str(r.status_code) in documented | {"404", "405"}, (
        op.method,
        op.path,
        r.status_code,
        r.text,
    )
    if r.status_code >= 400:
        assert isinstance(r.json().get("error"), str), r.text


SETTINGS = settings(
    max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@SETTINGS
@given(case=cases(GenerationMode.POSITIVE))
def test_valid_cases(live: LiveServer, client: httpx.Client, case: Any) -> None:
    check(live, client, case)


@SETTINGS
@given(case=cases(GenerationMode.NEGATIVE))
def test_invalid_cases(live: LiveServer, client: httpx.Client, case: Any) -> None:
    check(live, client, case)


def test_still_serves(live: LiveServer, client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    r = client.post(
        "/v1/codeq/tasks",
        json={"command": "ok", "payload": {}},
        headers={"Authorization": f"Bearer {live.tokens['producer']}"},
    )
    assert r.status_code == 202
