"""Fault-test helpers: a daemon tuned for fast retries, and the workload bound to it."""

from __future__ import annotations

from typing import Any

from tests.conftest import Daemon, merge
from tests.faults.workload import Reconciliation, Settings, Workload

#: Short leases need a reaper and promoter that look often; retries without backoff
#: (nack's delaySeconds still delays, capped at 5 s) keep every run short.
FAST: dict[str, Any] = {
    "actors": {"reaper": {"interval": "100ms"}, "promoter": {"interval": "100ms"}},
    "backoff": {"policy": "fixed", "base": 0, "max": 5},
}


def fast(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return merge(FAST, extra or {})


def workload(d: Daemon, **settings: Any) -> Workload:
    return Workload(d.base, lambda role, sub: d.token(role, sub=sub), Settings(**settings))


def assert_reconciled(rec: Reconciliation, wl: Workload) -> None:
    """Zero lost, zero stranded, no history violation, no 5xx but 503."""
    print(rec.summary())
    assert rec.created == wl.s.tasks, f"only {rec.created} of {wl.s.tasks} creates acknowledged"
    assert rec.lost == [], rec.lost
    assert rec.stranded == [], rec.stranded
    assert rec.violations == [], rec.violations
    assert rec.completed + rec.failed + rec.dead_lettered == rec.created
