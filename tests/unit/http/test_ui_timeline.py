"""The dashboard's timeline of a task written before the store kept events,
reconstructed from its record: what each state of the record says happened."""

from __future__ import annotations

from typing import Any

from codeqd.http._ui_timeline import reconstruct

T0 = 1_700_000_000_000


def _meta(**kw: Any) -> dict[str, Any]:
    return {"id": "t1", "command": "c", "status": "PENDING", "createdAt": T0, **kw}


async def _kinds(meta: dict[str, Any], result: dict[str, Any] | None = None) -> list[str]:
    timeline = reconstruct(meta, result)
    assert timeline.reconstructed
    return [e.kind for e in timeline.events]


async def test_new_task_is_only_created() -> None:
    assert await _kinds(_meta()) == ["created"]


async def test_retried_task_shows_its_last_claim_and_the_reason() -> None:
    meta = _meta(attempts=2, workerId="w1", claimedAt=T0 + 5, error="smtp down", runAt=T0 + 9)
    timeline = reconstruct(meta, None)
    assert [e.kind for e in timeline.events] == ["created", "claimed", "retry"]
    assert "attempt 2 by worker w1" in timeline.events[1].detail
    assert "1 earlier claim(s) not recorded" in timeline.events[1].detail
    assert "smtp down" in timeline.events[2].detail


async def test_dead_lettered_completed_and_cancelled() -> None:
    dead = _meta(status="FAILED", attempts=1, workerId="w", deadLettered=True, error="X")
    assert await _kinds(dead) == ["created", "claimed", "dead_lettered"]
    done = _meta(status="COMPLETED", attempts=1, workerId="w", webhook="https://h/x")
    result = {"status": "COMPLETED", "completedAt": "2026-01-01T00:00:00Z"}
    assert await _kinds(done, result) == ["created", "claimed", "result", "callback"]
    assert await _kinds(_meta(status="CANCELLED")) == ["created", "cancelled"]
