"""A worker's report of a task's outcome on the wire: validation (pure).

``parse_report`` checks one report, as ``POST /tasks/{id}/result`` and each item of
``POST /tasks/batch/results`` send it: ``status``, ``result``, ``error`` and the
``artifacts`` (links kept as they are, inline content decoded and size-checked,
see ``codeqd.domain.artifacts``).
"""

from __future__ import annotations

from typing import Any, Literal

from codeqd.domain.artifacts import Inline, check_link_url, parse_inline
from codeqd.domain.errors import ValidationError
from codeqd.domain.task import MAX_REASON_LEN, get_str

MAX_ARTIFACTS = 100

Artifact = dict[str, Any] | Inline


def parse_artifacts(value: Any, max_bytes: int) -> list[Artifact]:
    """``{name, url}`` links as they are; ``{name, contentBase64, contentType}`` decoded
    and size-checked (at most ``max_bytes`` each), to be stored with the result."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ARTIFACTS:
        raise ValidationError(
            "artifacts", f"expected a list of at most {MAX_ARTIFACTS} artifact objects"
        )
    out: list[Artifact] = []
    for i, item in enumerate(value):
        where = f"artifacts[{i}]"
        if not isinstance(item, dict):
            raise ValidationError(where, "expected an object")
        name, url = item.get("name"), item.get("url")
        if not isinstance(name, str) or not name or len(name) > 256:
            raise ValidationError(f"{where}.name", "expected a non-empty string")
        if "contentBase64" in item:
            out.append(parse_inline(item, where, max_bytes))
            continue
        if not isinstance(url, str) or not url or len(url) > 2048:
            raise ValidationError(f"{where}.url", "expected a URL string (or contentBase64)")
        check_link_url(url, f"{where}.url")
        out.append({"name": name, "url": url})
    return out


def parse_report(
    body: dict[str, Any], artifact_bytes: int
) -> tuple[Literal["COMPLETED", "FAILED"], dict[str, Any] | None, str | None, list[Artifact]]:
    """(status, result, error, artifacts) of a report; ValidationError names the field."""
    status = body.get("status")
    if status not in ("COMPLETED", "FAILED"):
        raise ValidationError("status", "must be 'COMPLETED' or 'FAILED'")
    result = body.get("result")
    error = get_str(body, "error", MAX_REASON_LEN)
    if status == "COMPLETED":
        if not isinstance(result, dict):
            raise ValidationError("result", "a COMPLETED result needs 'result' as a JSON object")
    else:
        if not error:
            raise ValidationError("error", "a FAILED result needs 'error' as a string")
        if result is not None and not isinstance(result, dict):
            raise ValidationError("result", "must be a JSON object when present")
    return status, result, error, parse_artifacts(body.get("artifacts"), artifact_bytes)
