"""A worker's report: status, result, error and artifacts, each refusal naming its field."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from codeqd.domain.artifacts import Inline, is_stored_name, to_store
from codeqd.domain.errors import ValidationError
from codeqd.domain.report import parse_artifacts, parse_report


def field_of(body: dict[str, Any], max_bytes: int = 1024) -> str:
    with pytest.raises(ValidationError) as e:
        parse_report(body, max_bytes)
    return e.value.field


def test_completed_needs_a_result_object() -> None:
    assert parse_report({"status": "COMPLETED", "result": {"a": 1}}, 10) == (
        "COMPLETED",
        {"a": 1},
        None,
        [],
    )
    assert field_of({"status": "COMPLETED"}) == "result"
    assert field_of({"status": "COMPLETED", "result": [1]}) == "result"


def test_failed_needs_an_error_and_allows_a_result() -> None:
    assert parse_report({"status": "FAILED", "error": "boom"}, 10) == ("FAILED", None, "boom", [])
    assert parse_report({"status": "FAILED", "error": "x", "result": {"p": 1}}, 10)[1] == {"p": 1}
    assert field_of({"status": "FAILED"}) == "error"
    assert field_of({"status": "FAILED", "error": ""}) == "error"
    assert field_of({"status": "FAILED", "error": "x", "result": "no"}) == "result"
    assert field_of({"status": "FAILED", "error": 3}) == "error"
    assert field_of({"status": "FAILED", "error": "x" * 4097}) == "error"


@pytest.mark.parametrize("status", [None, "PENDING", "CANCELLED", "completed", 1])
def test_only_completed_or_failed(status: object) -> None:
    assert field_of({"status": status, "result": {}}) == "status"


def test_links_are_kept_and_inline_content_decoded() -> None:
    out = parse_artifacts(
        [
            {"name": "log", "url": "https://logs.example/1"},
            {"name": "out.txt", "contentBase64": base64.b64encode(b"hi").decode()},
        ],
        16,
    )
    assert out == [
        {"name": "log", "url": "https://logs.example/1"},
        Inline("out.txt", b"hi", "application/octet-stream"),
    ]
    assert parse_artifacts(None, 16) == []


@pytest.mark.parametrize(
    ("artifacts", "field"),
    [
        ("x", "artifacts"),
        ([{"name": "a", "url": "https://x/"}] * 101, "artifacts"),
        (["x"], "artifacts[0]"),
        ([{"url": "https://x/"}], "artifacts[0].name"),
        ([{"name": "", "url": "https://x/"}], "artifacts[0].name"),
        ([{"name": "a"}], "artifacts[0].url"),
        ([{"name": "a", "url": "javascript:alert(1)"}], "artifacts[0].url"),
        ([{"name": "a", "url": "https://x/" + "a" * 2048}], "artifacts[0].url"),
        ([{"name": "a", "contentBase64": "!!"}], "artifacts[0].contentBase64"),
        ([{"name": "a", "contentBase64": base64.b64encode(b"x" * 17).decode()}], None),
        ([{"name": "a", "contentBase64": "", "contentType": "nope"}], "artifacts[0].contentType"),
    ],
)
def test_bad_artifacts_name_the_field(artifacts: Any, field: str | None) -> None:
    with pytest.raises(ValidationError) as e:
        parse_report({"status": "COMPLETED", "result": {}, "artifacts": artifacts}, 16)
    assert e.value.field == (field or "artifacts[0].contentBase64")


def test_inline_artifacts_are_stored_under_fresh_names() -> None:
    wire, inline = to_store(
        "t-1",
        "/v1/codeq",
        [{"name": "log", "url": "https://x/"}, Inline("o.txt", b"abc", "text/plain")],
    )
    assert wire[0] == {"name": "log", "url": "https://x/"}
    ((name, content),) = inline
    assert content == b"abc" and is_stored_name(name)
    assert wire[1] == {
        "name": "o.txt",
        "url": f"/v1/codeq/tasks/t-1/artifacts/{name}",
        "contentType": "text/plain",
        "size": 3,
    }
