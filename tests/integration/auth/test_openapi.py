"""The OpenAPI document is served without auth and matches the app's routes exactly."""

from __future__ import annotations

import re
import types
from pathlib import Path

from codeqd.http._app import create_app
from codeqd.http.openapi import DOCUMENT
from tests.integration.conftest import Api, make_config


def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(types.SimpleNamespace(config=make_config(tmp_path)))  # type: ignore[arg-type]
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":  # Quart's default static route: no folder, always 404
            continue
        # No OpenAPI operation: the stream (see test_the_worker_stream_is_described), and
        # the dashboard's HTML pages, which are not the API.
        if rule.websocket or rule.rule.startswith("/ui/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        out |= {(m, path) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    return out


def documented() -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in DOCUMENT["paths"].items() for m in ops}


def normalise(routes: set[tuple[str, str]]) -> set[tuple[str, str]]:
    # Path parameter names are free in both; compare shapes.
    return {(m, re.sub(r"\{[^}]+\}", "{}", p)) for m, p in routes}


def test_document_matches_the_routes(tmp_path: Path) -> None:
    routes, docs = normalise(app_routes(tmp_path)), normalise(documented())
    assert routes - docs == set(), "routes missing from the OpenAPI document"
    assert docs - routes == set(), "documented routes that do not exist"


def test_the_worker_stream_is_described(tmp_path: Path) -> None:
    app = create_app(types.SimpleNamespace(config=make_config(tmp_path)))  # type: ignore[arg-type]
    sockets = {rule.rule for rule in app.url_map.iter_rules() if rule.websocket}
    assert sockets == {"/v1/codeq/workers/stream"}
    assert "GET /v1/codeq/workers/stream is a WebSocket" in DOCUMENT["info"]["description"]


def test_every_operation_documents_its_errors() -> None:
    for path, ops in DOCUMENT["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if op.get("security"):
                assert {"401", "403", "429", "503"} <= codes, (method, path)
            if "{task_id}" in path:
                assert "404" in codes, (method, path)


async def test_served_without_auth(api: Api) -> None:
    r = await api.http.get(f"{api.base}/v1/codeq/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["openapi"].startswith("3.")
    assert r.json() == DOCUMENT
