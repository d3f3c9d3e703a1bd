"""Prometheus metrics, defined once; ``render`` is what ``/metrics`` serves.

The daemon sets ``PROMETHEUS_MULTIPROC_DIR`` (``<state_dir>/metrics``, see
``codeqd.cli``) before this module is imported, so counters from every ingress process are summed at
scrape time; without it (tests, embedding) the process-local registry is used.
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Iterable

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
    "codeq_long_poll_waiters", "Requests waiting in a long-poll", multiprocess_mode="livesum"
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


def inc_each(counter: Counter, labels: Iterable[tuple[str, ...]]) -> None:
    """One ``inc(n)`` per distinct label set: a batch of 100 tasks of one command costs
    one multiprocess-file write instead of 100 (they were ~5 % of the batch endpoints)."""
    for key, n in Tally(labels).items():
        counter.labels(*key).inc(n)


def process_exited(pid: int) -> None:
    """A child that served metrics has gone: drop its live gauges."""
    if os.environ.get(_MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def render() -> bytes:
    if os.environ.get(_MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
