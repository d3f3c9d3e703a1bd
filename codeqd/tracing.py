"""OpenTelemetry spans (SPEC §8, ``[tracing]``): a server span per HTTP request, a span
per store step, one when a task is claimed and a client span per result callback.

Spans are made with the OpenTelemetry SDK and sent with its OTLP/HTTP exporter. The
SDK's own batch processor exports from a thread of its own, outside any nursery; here
ended spans go into a bounded buffer instead, and :func:`running` exports them from a
task of the caller's nursery (the exporter's blocking POST in ``trio.to_thread``), so
no thread outlives the process's structured scope. A full buffer drops spans (counted
in the log), never blocks a request.

A task's trace is the one its create request carried (``traceParent`` in its
metadata): the claim span and the callback span are children of it, so one trace runs
producer → codeqd → worker → callback even though the worker's claim request carries
no trace of that task. With tracing off, nothing here is imported from OpenTelemetry
and every helper is a no-op but :func:`callback_trace`, which still forwards the trace
context the task stored.
"""

from __future__ import annotations

import collections
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import structlog
import trio

from codeqd.config import TracingConfig
from codeqd.domain.tracecontext import callback_headers

log = structlog.get_logger("codeqd.tracing")

#: Ended spans kept for the next export; more are dropped.
MAX_BUFFERED = 4096
#: Spans per export request, and the longest an ended span waits to be sent.
EXPORT_BATCH = 512
EXPORT_INTERVAL = 1.0
#: Bound of one export request, and of the last flush at shutdown.
EXPORT_TIMEOUT = 5.0

T = TypeVar("T")


class _Buffer:
    """A SpanProcessor (duck-typed: ``on_start``/``on_end``/``shutdown``/
    ``force_flush``) keeping ended, sampled spans for the export task."""

    def __init__(self) -> None:
        self.spans: collections.deque[Any] = collections.deque()
        self.dropped = 0
        self.full = trio.Event()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: Any) -> None:
        if not span.context.trace_flags.sampled:
            return
        if len(self.spans) >= MAX_BUFFERED:
            self.dropped += 1
            return
        self.spans.append(span)
        if len(self.spans) >= EXPORT_BATCH:
            self.full.set()  # spans end in the trio thread only (requests, actors)

    def take(self) -> list[Any]:
        out = [self.spans.popleft() for _ in range(min(EXPORT_BATCH, len(self.spans)))]
        if len(self.spans) < EXPORT_BATCH:
            self.full = trio.Event()
        return out

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@dataclass
class Tracer:
    """The process's tracer while :func:`running` runs."""

    config: TracingConfig
    tracer: Any
    exporter: Any
    buffer: _Buffer
    propagator: Any
    otel: Any = field(repr=False)  # the opentelemetry.trace module

    async def export_forever(self) -> None:
        """Send what ended, every ``EXPORT_INTERVAL`` or as soon as a batch is full.
        Cancellation: cancelled between exports, or waits for the one in flight
        (bounded by ``EXPORT_TIMEOUT``)."""
        while True:
            with trio.move_on_after(EXPORT_INTERVAL):
                await self.buffer.full.wait()
            await self.export_once()

    async def export_once(self) -> None:
        while batch := self.buffer.take():
            result = await trio.to_thread.run_sync(self.exporter.export, batch)
            if getattr(result, "name", "") != "SUCCESS":
                log.warning(
                    "tracing.export_failed", spans=len(batch), endpoint=self.config.endpoint
                )
        if self.buffer.dropped:
            log.warning("tracing.spans_dropped", count=self.buffer.dropped, limit=MAX_BUFFERED)
            self.buffer.dropped = 0

    def parent_of(self, carrier: Mapping[str, str]) -> Any:
        return self.propagator.extract(carrier=dict(carrier))


_current: Tracer | None = None


def current() -> Tracer | None:
    return _current


def _make(config: TracingConfig) -> Tracer:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from codeqd._version import __version__

    buffer = _Buffer()
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        resource=Resource.create(
            {"service.name": config.service_name, "service.version": __version__}
        ),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(cast(Any, buffer))
    exporter = OTLPSpanExporter(
        endpoint=config.endpoint, headers=dict(config.headers), timeout=EXPORT_TIMEOUT
    )
    return Tracer(
        config=config,
        tracer=provider.get_tracer("codeqd", __version__),
        exporter=exporter,
        buffer=buffer,
        propagator=TraceContextTextMapPropagator(),
        otel=trace,
    )


@asynccontextmanager
async def running(config: TracingConfig) -> AsyncIterator[Tracer | None]:
    """Trace this process while the block runs (nothing when ``enabled`` is false),
    exporting from a task of a nursery of its own; the spans still buffered are sent
    at the end (shielded, within ``EXPORT_TIMEOUT``)."""
    global _current
    if not config.enabled:
        yield None
        return
    tracer = _make(config)
    previous, _current = _current, tracer
    log.info(
        "tracing.enabled",
        endpoint=config.endpoint,
        sample_ratio=config.sample_ratio,
        service_name=config.service_name,
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tracer.export_forever)
            try:
                yield tracer
            finally:
                nursery.cancel_scope.cancel()
    finally:
        _current = previous
        with trio.move_on_after(EXPORT_TIMEOUT) as scope:
            scope.shield = True
            await tracer.export_once()
        tracer.exporter.shutdown()


# ---------------------------------------------------------------- HTTP requests


def asgi_middleware(app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A server span around each HTTP request, continuing its ``traceparent``; the
    route renames it (:func:`name_request`) once it is known."""

    async def traced(scope: dict[str, Any], receive: Any, send: Any) -> None:
        tracer = _current
        if tracer is None or scope.get("type") != "http":
            await app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        kind = tracer.otel.SpanKind.SERVER
        method = scope.get("method", "")
        with tracer.tracer.start_as_current_span(
            method,
            context=tracer.parent_of(headers),
            kind=kind,
            attributes={"http.request.method": method, "url.path": scope.get("path", "")},
            record_exception=False,
            set_status_on_exception=True,
        ) as span:

            async def send_traced(message: dict[str, Any]) -> None:
                if message.get("type") == "http.response.start":
                    status = int(message.get("status", 0))
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(tracer.otel.Status(tracer.otel.StatusCode.ERROR))
                await send(message)

            await app(scope, receive, send_traced)

    return traced


def name_request(method: str, route: str) -> None:
    """Name the request's server span after its route (``POST /v1/codeq/tasks``)."""
    tracer = _current
    if tracer is None:
        return
    span = tracer.otel.get_current_span()
    if span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)


# ---------------------------------------------------------------- store steps


class _TracedStore:
    """The store as the routes see it with tracing on: each coroutine method call is a
    child span ``store.<name>`` of the request's span; everything else passes through."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not inspect.iscoroutinefunction(value):
            return value

        async def call(*args: Any, **kwargs: Any) -> Any:
            with store_step(name):
                return await value(*args, **kwargs)

        return call


def traced_store(store: T) -> T:
    """``store`` with a span per step (while a tracer runs; a no-op otherwise)."""
    return cast(T, _TracedStore(store))


@contextmanager
def store_step(name: str) -> Iterator[None]:
    tracer = _current
    if tracer is None:
        yield
        return
    with tracer.tracer.start_as_current_span(
        f"store.{name}",
        kind=tracer.otel.SpanKind.CLIENT,
        attributes={"db.system": "redis", "db.operation.name": name},
    ):
        yield


# ---------------------------------------------------------------- a task's trace


def _task_parent(tracer: Tracer, meta: Mapping[str, Any]) -> Any:
    return tracer.parent_of(callback_headers(meta))


def task_claimed(meta: Mapping[str, Any], worker: str) -> None:
    """A span in the task's own trace (the one its create carried): claimed by
    ``worker``, linked to the claim request's span."""
    tracer = _current
    if tracer is None or not meta.get("traceParent"):
        return
    otel = tracer.otel
    request_span = otel.get_current_span().get_span_context()
    links = [otel.Link(request_span)] if request_span.is_valid else []
    span = tracer.tracer.start_span(
        f"claim {meta.get('command', '')}",
        context=_task_parent(tracer, meta),
        kind=otel.SpanKind.CONSUMER,
        links=links,
        attributes={
            "codeq.task.id": str(meta.get("id", "")),
            "codeq.task.command": str(meta.get("command", "")),
            "codeq.task.attempt": int(meta.get("attempts", 0) or 0),
            "codeq.worker.id": worker,
        },
    )
    span.end()


@dataclass
class CallbackTrace:
    """The trace headers of one callback attempt, and its span (None: not traced)."""

    headers: dict[str, str]
    span: Any = None

    def finish(self, status: int | None, error: str) -> None:
        if self.span is None:
            return
        tracer = _current
        if status is not None:
            self.span.set_attribute("http.response.status_code", status)
        if error and tracer is not None:
            self.span.set_status(tracer.otel.Status(tracer.otel.StatusCode.ERROR, error))


@contextmanager
def callback_trace(meta: Mapping[str, Any], url_host: str, attempt: int) -> Iterator[CallbackTrace]:
    """The result callback's trace context: the task's stored ``traceparent`` and
    ``tracestate``; with tracing on, a client span in the task's trace, whose context
    the headers then carry instead."""
    tracer = _current
    if tracer is None:
        yield CallbackTrace(callback_headers(meta))
        return
    with tracer.tracer.start_as_current_span(
        "POST callback",
        context=_task_parent(tracer, meta),
        kind=tracer.otel.SpanKind.CLIENT,
        attributes={
            "http.request.method": "POST",
            "server.address": url_host,
            "codeq.task.id": str(meta.get("id", "")),
            "codeq.callback.attempt": attempt,
        },
    ) as span:
        headers: dict[str, str] = {}
        tracer.propagator.inject(headers)
        yield CallbackTrace(headers, span)
