"""schemathesis against the served OpenAPI document: cases generated from every documented
operation (valid and invalid), sent to the real app with a token of the right kind.
Never a 5xx, every status is documented, every error is a JSON body.

A valid case (one whose body really conforms to the document) must get its operation's
success status, or one of the specific errors in ``justified``: each names why a request
the document allows can still be refused (an id that names nothing, a configured limit
the static document does not carry, a rule JSON Schema cannot state).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NotSet

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


def _conforms(op: Any, body: Any) -> bool:
    """The generated body really matches the documented schema (schemathesis' positive
    mode sometimes yields one that does not, e.g. a NotSet body or a stray value)."""
    content = op.definition.raw.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if isinstance(body, NotSet):
        return not op.definition.raw.get("requestBody", {}).get("required", False)
    if schema is None:
        return True
    root = {**schema, "components": DOCUMENT["components"]}
    return bool(jsonschema_rs.validator_for(root).is_valid(body))


def justified(live: LiveServer, op: Any, body: Any, params: Any, r: httpx.Response) -> str | None:
    """Why a documented-valid request may get this error, or None when nothing does."""
    err = r.json()
    code, field = err.get("code"), (err.get("details") or {}).get("field")
    body = body if isinstance(body, dict) else {}
    value = body.get(field) if isinstance(field, str) else None
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    limits = live.config.limits
    if r.status_code == 404 and code in ("task_not_found", "subscription_not_found"):
        ids = {p["name"] for p in op.definition.raw.get("parameters", []) if p["in"] == "path"}
        if ids & {"task_id", "subscription_id"}:
            return "a generated id names nothing stored"
    if r.status_code != 400 or code != "validation_error":
        return None
    if field == "maxTasks" and number is not None and number > limits.batch_max:
        return "limits.batch_max is configured, so the static document gives no maximum"
    lease_field = field in ("leaseSeconds", "extendSeconds")
    if lease_field and number is not None and number > limits.max_lease_seconds:
        return "limits.max_lease_seconds is configured: no maximum in the document"
    if field == "error" and body.get("status") == "FAILED" and not value:
        return "a FAILED report needs an error: a condition the schema does not state"
    if field == "result" and body.get("status") == "COMPLETED" and not isinstance(value, dict):
        return "a COMPLETED report needs a result object: a condition the schema does not state"
    if isinstance(field, str) and field.startswith("artifacts["):
        return "an artifact is a link or inline content (valid base64 within the size limit)"
    if "beyond 64 bits" in str(err.get("error")):
        return "integers past 64 bits are refused anywhere in a body (JSON Schema has no bound)"
    if field == "runAt":
        return "date-time carries no range; runAt's range is checked by the server"
    if field in ("webhook", "callbackUrl"):
        return "format: uri cannot carry the URL policy (hosts, private networks)"
    if field == "groupId" and body.get("deliveryMode") == "group" and not body.get("groupId"):
        return "deliveryMode 'group' needs a groupId: a condition the schema does not state"
    max_ttl = live.config.webhooks.subscription_max_ttl
    if field == "ttlSeconds" and number is not None and number > max_ttl:
        return "webhooks.subscription_max_ttl is configured: no maximum in the document"
    if field == "tenant" and isinstance(params, dict) and params.get("tenant") == "*":
        return "'*' means every tenant and cannot be acted on as one"
    return None


def check(live: LiveServer, client: httpx.Client, case: Any, valid: bool = False) -> None:
    op = case.operation
    audience = op.definition.raw.get("x-codeq-audience", "none")
    kwargs = case.as_transport_kwargs(base_url=live.base)
    headers = {
        k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"
    }
    params = kwargs.get("params") or {}
    if audience in TOKEN_FOR:
        role = TOKEN_FOR[audience]
        if role == "admin" and isinstance(params, dict) and params.get("tenant"):
            role = "root"  # naming a tenant takes an admin token for every tenant
        headers["Authorization"] = f"Bearer {live.tokens[role]}"
    # Keep examples short: no long-polls. JSON Schema counts 29.0 as an integer, and so
    # does the server, so any number (or numeric string) becomes 0.
    if isinstance(params, dict) and _numeric(params.get("waitSeconds")):
        params["waitSeconds"] = "0"
    body = kwargs.get("json")
    if isinstance(body, dict) and _numeric(body.get("waitSeconds")):
        body["waitSeconds"] = 0
    if isinstance(case.body, NotSet):  # no body at all, not schemathesis' placeholder bytes
        content = None
    else:
        content = kwargs.get("data") if "json" not in kwargs else None
    try:
        r = client.request(
            kwargs["method"],
            kwargs["url"],
            headers=headers,
            params=params,
            json=body if "json" in kwargs else None,
            content=content,
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
    if valid and _conforms(op, case.body):
        success = {s for s in documented if s.startswith("2")}
        if str(r.status_code) not in success:
            assert r.status_code >= 400 and justified(live, op, body, params, r), (
                "a valid request was refused",
                op.method,
                op.path,
                body,
                params,
                r.status_code,
                r.text,
            )


SETTINGS = settings(
    max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@SETTINGS
@given(case=cases(GenerationMode.POSITIVE))
def test_valid_cases(live: LiveServer, client: httpx.Client, case: Any) -> None:
    check(live, client, case, valid=True)


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
