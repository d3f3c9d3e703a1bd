"""Prometheus metrics, defined once; ``render`` is what ``/metrics`` serves.

The daemon sets ``PROMETHEUS_MULTIPROC_DIR`` (``<state_dir>/metrics``, see
``codeqd.cli``) before this module is imported, so counters from every ingress process are summed at
scrape time; without it (tests, embedding) the process-local registry is used.

The hot path does not write to prometheus_client: in multiprocess mode each ``inc`` or
``observe`` is a lock, a pid check and an mmap write (about a tenth of the daemon's CPU
in a streamed drain). ``add`` and ``observe`` here tally in process memory, and
``flush`` hands the tallies over — a histogram's observations as one increment per
bucket — every ``FLUSH_SECONDS`` (``flush_every``, run by each process that serves
requests and by the supervisor), before ``render``, and when the loop ends. Inbox
depths are read at flush time from the inboxes themselves (``track_depth``), not set
on every message. So /metrics lags the process that counted by at most
``FLUSH_SECONDS``; a process killed with -9 loses at most that much of its counts.
"""

from __future__ import annotations

import os
import weakref
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any, Protocol

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

TASK_CREATED = Counter("codeq_task_created_total", "Tasks created", ["command"])
TASK_CLAIMED = Counter("codeq_task_claimed_total", "Tasks handed to a worker", ["command"])
TASK_COMPLETED = Counter(
    "codeq_task_completed_total",
    "Tasks that became terminal (COMPLETED, FAILED incl. dead-lettered, CANCELLED)",
    ["command", "status"],
)
PROCESSING_LATENCY = Histogram(
    "codeq_task_processing_latency_seconds",
    "From the claim to the worker's result",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
LEASE_EXPIRED = Counter("codeq_lease_expired_total", "Leases that expired", ["command"])
QUEUE_DEPTH = Gauge(
    "codeq_queue_depth",
    "Tasks per queue and state (sampled)",
    ["command", "queue"],
    multiprocess_mode="mostrecent",
)
DLQ_DEPTH = Gauge(
    "codeq_dlq_depth", "Dead-lettered tasks (sampled)", ["command"], multiprocess_mode="mostrecent"
)
HTTP_DURATION = Histogram(
    "codeq_http_request_duration_seconds",
    "HTTP requests by route and status",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)
STORE_DURATION = Histogram(
    "codeq_store_call_duration_seconds",
    "Store round trips by script",
    ["script"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
)
ACTOR_RESTARTS = Counter("codeq_actor_restarts_total", "Actor restarts", ["actor"])
RATELIMIT_REJECTED = Counter(
    "codeq_rate_limit_hits_total",
    "Requests refused with 429 by a rate limit",
    ["scope", "operation"],
)
RATELIMIT_STORE_ERRORS = Counter(
    "codeq_ratelimit_store_errors_total",
    "Rate-limit checks that let the request through because the store did not answer",
    ["operation"],
)
#: kind = "result" (task callbacks) | "queue_ready" (subscription notifications);
#: outcome = "success" | "retry" | "failure" | "dropped" (notifier saturated).
WEBHOOK_DELIVERIES = Counter(
    "codeq_webhook_deliveries_total",
    "Webhook delivery attempts by outcome",
    ["kind", "command", "outcome"],
)
SUBSCRIPTIONS_ACTIVE = Gauge(
    "codeq_subscriptions_active",
    "Live worker subscriptions by event type (sampled)",
    ["command"],
    multiprocess_mode="mostrecent",
)
LONG_POLL_WAITERS = Gauge(
    "codeq_long_poll_waiters",
    "Long-polling requests waiting for a wake-up (between their looks at the store)",
    multiprocess_mode="livesum",
)
STREAMS_OPEN = Gauge(
    "codeq_worker_streams_open", "Worker streams open", multiprocess_mode="livesum"
)
STREAM_MESSAGES = Counter(
    "codeq_worker_stream_messages_total",
    "Worker stream messages by direction (in: from workers, out: to workers) and type",
    ["direction", "type"],
)
INBOX_DEPTH = Gauge(
    "codeq_actor_inbox_depth",
    "Messages waiting in an actor's inbox (a bounded trio memory channel)",
    ["actor"],
    multiprocess_mode="livesum",
)
INBOX_DROPPED = Counter(
    "codeq_actor_inbox_dropped_total",
    "Wake-up hints dropped because the actor's inbox was full (the actor then re-checks)",
    ["actor"],
)


#: Most seconds a count waits in process memory before prometheus_client has it.
FLUSH_SECONDS = 1.0

_added: dict[tuple[Counter | Gauge, tuple[str, ...]], float] = {}
_observed: dict[tuple[Histogram, tuple[str, ...]], list[float]] = {}


class HasDepth(Protocol):
    def pending(self) -> int: ...


_depths: dict[str, weakref.WeakSet[Any]] = {}


def add(metric: Counter | Gauge, *labels: str, amount: float = 1) -> None:
    """``metric.labels(*labels).inc(amount)``, at the next ``flush``."""
    key = (metric, labels)
    _added[key] = _added.get(key, 0) + amount


#: Observations one histogram child keeps between flushes; past it they are handed
#: over at once (a process that never flushes, e.g. a one-shot CLI command or a test
#: without ``serve``, still holds a bounded number).
_MAX_PENDING = 10_000


def observe(metric: Histogram, value: float, *labels: str) -> None:
    """``metric.labels(*labels).observe(value)``, at the next ``flush``."""
    key = (metric, labels)
    values = _observed.get(key)
    if values is None:
        _observed[key] = [value]
    else:
        values.append(value)
        if len(values) >= _MAX_PENDING:
            del _observed[key]
            _observe_all(_child(metric, labels), values)


def inc_each(counter: Counter, labels: Iterable[tuple[str, ...]]) -> None:
    """``add`` once per distinct label set (a batch of 100 tasks of one command: one)."""
    for key, n in Tally(labels).items():
        add(counter, *key, amount=n)


def track_depth(actor: str, inbox: HasDepth) -> None:
    """``codeq_actor_inbox_depth{actor}`` is the sum of its inboxes' ``pending()`` at each
    flush; an inbox is forgotten when it is garbage (weakly held)."""
    _depths.setdefault(actor, weakref.WeakSet()).add(inbox)


def _child(metric: Any, labels: tuple[str, ...]) -> Any:
    return metric.labels(*labels) if labels else metric


def _observe_all(hist: Any, values: list[float]) -> None:
    """``observe`` each of ``values``: one increment per bucket and one of the sum."""
    bounds = getattr(hist, "_upper_bounds", None)
    buckets = getattr(hist, "_buckets", None)
    total = getattr(hist, "_sum", None)
    if bounds is None or buckets is None or total is None:  # another prometheus_client
        for v in values:
            hist.observe(v)
        return
    counts = [0] * len(bounds)
    for v in values:
        counts[bisect_left(bounds, v)] += 1  # the first bucket whose bound is >= v
    for i, n in enumerate(counts):
        if n:
            buckets[i].inc(n)
    total.inc(sum(values))


def flush() -> None:
    """Hand every tally to prometheus_client and read the inboxes' depths."""
    added = dict(_added)
    _added.clear()
    observed = dict(_observed)
    _observed.clear()
    for (metric, labels), amount in added.items():
        _child(metric, labels).inc(amount)
    for (hist, labels), values in observed.items():
        _observe_all(_child(hist, labels), values)
    for actor, boxes in _depths.items():
        INBOX_DEPTH.labels(actor).set(sum(box.pending() for box in list(boxes)))


async def flush_every(seconds: float = FLUSH_SECONDS) -> None:
    """``flush`` every ``seconds`` until cancelled, and once more then."""
    try:
        while True:
            await trio.sleep(seconds)
            flush()
    finally:
        flush()


def process_exited(pid: int) -> None:
    """A child that served metrics has gone: drop its live gauges."""
    if os.environ.get(_MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def render() -> bytes:
    flush()
    if os.environ.get(_MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
