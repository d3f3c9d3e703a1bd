"""Hostile input, property-based: arbitrary JSON and bytes at every route with every kind
of token. Never a 5xx, every error is a JSON body, and the daemon serves normally after.

Examples are bounded (see ``settings``) so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeqd.http._app import create_app
from tests.integration.auth.live import LiveServer, live_fixture  # noqa: F401 - provides `live`
from tests.integration.conftest import make_config

FUZZ = settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=10) as c:
        yield c


def routes() -> list[tuple[str, str]]:
    import types

    app = create_app(types.SimpleNamespace(config=make_config(Path("/nonexistent"))))  # type: ignore[arg-type]
    return sorted(
        (m, r.rule)
        for r in app.url_map.iter_rules()
        if r.endpoint != "static"
        for m in r.methods or ()
        if m not in ("HEAD", "OPTIONS")
    )


ROUTES = routes()


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # the stdlib writes integers of any size


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
# Fields the routes read, with hostile values; waitSeconds stays 0 so no example long-polls.
FIELDS = {
    "command": st.text(max_size=140),
    "payload": json_values,
    "priority": json_values,
    "maxAttempts": json_values,
    "webhook": st.text(max_size=40),
    "runAt": st.text(),
    "delaySeconds": json_values,
    "idempotencyKey": json_values,
    "commands": st.lists(st.text(max_size=10), max_size=3) | json_values,
    "leaseSeconds": json_values,
    "waitSeconds": st.just(0) | st.text(max_size=3),
    "extendSeconds": json_values,
    "leaseId": json_values,
    "status": json_values,
    "result": json_values,
    "error": json_values,
    "artifacts": json_values,
    "reason": json_values,
    "ids": json_values,
    "limit": json_values,
    "before": json_values,
    "tasks": json_values,
    "maxTasks": json_values,
}
bodies = st.one_of(
    json_values.map(dumps),
    st.fixed_dictionaries({}, optional=FIELDS).map(dumps),
    st.binary(max_size=300),
)
tokens = st.sampled_from(["producer", "worker", "admin", "root", "", "garbage", "a.b.c"])
content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "",
        "application/x+json",
        "application/json; charset=latin-1",
        "multipart/form-data",
    ]
)
segments = st.one_of(
    st.sampled_from(["01a207b1-88ed-78c7-89ec-9d85f8c0b900", "email", "..", "%00", "a" * 300]),
    st.text(
        st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"),
        min_size=1,
        max_size=30,
    ),
)
queries = st.dictionaries(
    st.sampled_from(["waitSeconds", "limit", "cursor", "tenant"]),
    st.text(max_size=8).filter(lambda s: s != "0" and not s.isdigit()),
    max_size=3,
)


def assert_sane(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text
    html = r.headers.get("content-type", "").startswith("text/html")
    if r.status_code >= 400 and html and r.url.path.startswith("/ui/"):
        # The dashboard's refusals are pages for a person, not JSON.
        assert "Traceback" not in r.text
    elif r.status_code >= 400:
        body = r.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str), r.text
        assert "Traceback" not in r.text


def fill(rule: str, params: list[str]) -> str:
    it = iter(params)
    return re.sub(r"<[^>]+>", lambda _: next(it, "x"), rule)


@FUZZ
@given(
    route=st.sampled_from(ROUTES),
    token=tokens,
    body=bodies,
    ctype=content_types,
    params=st.lists(segments, min_size=2, max_size=2),
    query=queries,
)
def test_arbitrary_requests_never_5xx(
    live: LiveServer,
    client: httpx.Client,
    route: tuple[str, str],
    token: str,
    body: bytes,
    ctype: str,
    params: list[str],
    query: dict[str, str],
) -> None:
    method, rule = route
    headers = {"Content-Type": ctype} if ctype else {}
    bearer = live.tokens.get(token, token)
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    r = client.request(method, fill(rule, params), content=body, headers=headers, params=query)
    assert_sane(r)


@FUZZ
@given(header=st.text(max_size=200), path=st.text(max_size=60))
def test_arbitrary_auth_headers_and_paths(client: httpx.Client, header: str, path: str) -> None:
    try:
        r = client.get(f"/v1/codeq/tasks/{path}", headers={"Authorization": header})
    except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
        return  # the client refuses to send it: nothing reached the server
    assert_sane(r)


def test_daemon_still_serves_normally(live: LiveServer, client: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {live.tokens['producer']}"}
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.post(
        "/v1/codeq/tasks", json={"command": "after-fuzz", "payload": {"k": 1}}, headers=auth
    )
    assert r.status_code == 202, r.text
    worker = {"Authorization": f"Bearer {live.tokens['worker']}"}
    r = client.post("/v1/codeq/tasks/claim", json={"commands": ["after-fuzz"]}, headers=worker)
    assert r.status_code == 200 and r.json()["payload"] == {"k": 1}
