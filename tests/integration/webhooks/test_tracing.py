"""Tracing end to end (SPEC §8): the real supervisor with ``[tracing] enabled`` exports
to an OTLP/HTTP receiver on 127.0.0.1, whose protobuf requests the test decodes; one
trace id spans the create request, the claim and the result callback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.integration.webhooks._receiver import Receiver
from tests.integration.webhooks.conftest import run_supervised, supervised_config

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
PARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


def spans_of(collector: Receiver) -> list[tuple[str, Span]]:
    """Every span received so far, with its resource's service.name."""
    out = []
    for req in collector.requests:
        assert req.method == "POST" and req.headers["content-type"] == "application/x-protobuf"
        export = ExportTraceServiceRequest()
        export.ParseFromString(req.body)
        for resource_spans in export.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            out.extend((service, s) for scope in resource_spans.scope_spans for s in scope.spans)
    return out


def attrs(span: Span) -> dict[str, Any]:
    return {
        a.key: a.value.string_value or a.value.int_value or a.value.bool_value
        for a in span.attributes
    }


async def wait_for_spans(collector: Receiver, names: set[str]) -> list[tuple[str, Span]]:
    """Until spans of every name in ``names`` arrived in the caller's trace."""
    with trio.fail_after(15):
        while True:
            got = spans_of(collector)
            seen = {s.name for _, s in got if s.trace_id.hex() == TRACE_ID}
            if names <= seen:
                return got
            await collector.wait_for(len(collector.requests) + 1)


async def test_one_trace_spans_create_claim_and_callback(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    collector = await Receiver(200).start(nursery)
    hook = await Receiver(200).start(nursery)
    config = supervised_config(tmp_path, redis_url)
    config = type(config)(
        **{
            **{f: getattr(config, f) for f in config.__dataclass_fields__},
            "tracing": type(config.tracing)(
                enabled=True,
                endpoint=collector.url,
                headers={"x-api-key": "k"},
                service_name="codeqd-test",
            ),
        }
    )
    async with run_supervised(config) as s:
        api = s.api
        r = await api.call(
            "POST",
            "/tasks",
            api.producer,
            {"command": "traced", "payload": {}, "webhook": hook.url},
            headers={"traceparent": PARENT, "tracestate": "vendor=opaque"},
        )
        assert r.status_code == 202, r.text
        task = r.json()
        assert (task["traceParent"], task["traceState"]) == (PARENT, "vendor=opaque")
        claimed = (await api.claim(commands=["traced"])).json()
        assert claimed["traceParent"] == PARENT
        r = await api.call(
            "POST",
            f"/tasks/{task['id']}/result",
            api.worker,
            {"status": "COMPLETED", "result": {}, "leaseId": claimed["leaseId"]},
        )
        assert r.status_code == 200
        (callback,) = await hook.wait_for(1)
        got = await wait_for_spans(
            collector, {"POST /v1/codeq/tasks", "store.create", "claim traced", "POST callback"}
        )
    # The callback continues the task's trace: same trace id, the callback span as parent,
    # and the tracestate the producer sent.
    version, trace_id, callback_span, flags = callback.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert callback.headers["tracestate"] == "vendor=opaque"
    assert {service for service, _ in got} == {"codeqd-test"}
    assert all(req.headers["x-api-key"] == "k" for req in collector.requests)

    spans = {s.name: s for _, s in got if s.trace_id.hex() == TRACE_ID}
    create = spans["POST /v1/codeq/tasks"]
    assert create.kind == Span.SPAN_KIND_SERVER and create.parent_span_id.hex() == CALLER_SPAN
    assert attrs(create)["http.response.status_code"] == 202
    assert spans["store.create"].parent_span_id == create.span_id
    claim = spans["claim traced"]
    assert claim.kind == Span.SPAN_KIND_CONSUMER and claim.parent_span_id.hex() == CALLER_SPAN
    assert attrs(claim)["codeq.task.id"] == task["id"]
    assert attrs(claim)["codeq.worker.id"] == "worker-1"
    # Linked to the claim request's own span (a trace of its own: it carried none).
    (link,) = claim.links
    claim_request = next(
        s for _, s in got if s.span_id == link.span_id and s.name == "POST /v1/codeq/tasks/claim"
    )
    assert claim_request.trace_id != create.trace_id
    assert any(
        s.name == "store.claim" and s.parent_span_id == claim_request.span_id for _, s in got
    )
    sent = spans["POST callback"]
    assert sent.kind == Span.SPAN_KIND_CLIENT and sent.span_id.hex() == callback_span
    assert sent.parent_span_id.hex() == CALLER_SPAN
    assert attrs(sent)["http.response.status_code"] == 200
