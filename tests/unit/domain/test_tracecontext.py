"""W3C trace context as a task keeps it: valid headers kept as sent, anything else
ignored (never refused)."""

from __future__ import annotations

import pytest

from codeqd.domain.tracecontext import (
    callback_headers,
    parse_traceparent,
    parse_tracestate,
    trace_context,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "value",
    [PARENT, f"00-{TRACE_ID}-00f067aa0ba902b7-00", f"01-{TRACE_ID}-00f067aa0ba902b7-01-later"],
)
def test_a_valid_traceparent_is_kept(value: str) -> None:
    assert parse_traceparent(value) == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        PARENT.upper(),  # lower-case hex only
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",  # version ff is invalid
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra",  # version 00 has exactly 4 fields
        f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01",
        PARENT + "x" * 300,
    ],
)
def test_an_invalid_traceparent_is_ignored(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_tracestate_members() -> None:
    assert parse_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE") == (
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    )
    assert parse_tracestate("a@vendor=1, ,b=2") == "a@vendor=1,b=2"
    for bad in (
        "",
        "no-equals",
        "UPPER=1",
        "k=",
        "k=a,b",
        ",".join(["k=v"] * 33),
        "k=" + "v" * 600,
    ):
        assert parse_tracestate(bad) is None, bad


def test_tracestate_only_with_a_valid_traceparent() -> None:
    assert trace_context({"traceparent": PARENT, "tracestate": "k=v"}) == (PARENT, "k=v")
    assert trace_context({"traceparent": PARENT, "tracestate": "K=v"}) == (PARENT, None)
    assert trace_context({"traceparent": "bad", "tracestate": "k=v"}) == (None, None)
    assert trace_context({}) == (None, None)


def test_callback_headers_carry_what_the_task_stored() -> None:
    assert callback_headers({"traceParent": PARENT, "traceState": "k=v"}) == {
        "traceparent": PARENT,
        "tracestate": "k=v",
    }
    assert callback_headers({"traceState": "k=v"}) == {}
    assert callback_headers({}) == {}
