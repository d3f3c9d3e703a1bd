"""Result callbacks (webhooks of terminal tasks): the body sent, how long one delivery
holds its outbox entry, and the wait before the next attempt."""

from __future__ import annotations

from typing import Any

import orjson

from codeqd.domain.task import synthesized_result


def lease_ms(timeout: float) -> int:
    """How long a delivery holds its outbox entry: the request's ``timeout`` plus a
    margin of as much again, at most 5 s, so that no other dispatcher takes it over
    while the request may still be answered."""
    timeout = float(timeout)
    return int((timeout + min(timeout, 5.0)) * 1000)


def backoff_seconds(base: float, cap: float, attempt: int) -> float:
    """The wait after failed delivery ``attempt`` (1, 2...): doubling from ``base``,
    at most ``cap``."""
    return float(min(float(cap), float(base) * 2 ** (attempt - 1)))


def callback_body(meta: dict[str, Any], result: dict[str, Any] | None) -> bytes:
    """The callback document: the stored Result, or one synthesized for a task that
    ended without a worker's report (dead-lettered, cancelled)."""
    doc = result if result and result.get("status") == meta["status"] else synthesized_result(meta)
    doc = doc or {}
    body: dict[str, Any] = {
        "taskId": meta["id"],
        "eventType": meta["command"],
        "status": meta["status"],
    }
    # As in codeQ (omitempty): a field with no value is left out, never null.
    for key in ("result", "error"):
        if doc.get(key) is not None:
            body[key] = doc[key]
    body["artifacts"] = doc.get("artifacts") or []
    if doc.get("completedAt") is not None:
        body["completedAt"] = doc["completedAt"]
    return orjson.dumps(body)
