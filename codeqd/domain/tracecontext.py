"""W3C trace context (``traceparent``/``tracestate``) as a task carries it: checked at
create, kept verbatim in the task's metadata, sent again on its result callback.

A header that does not parse is ignored (W3C: a receiver restarts the trace), never
refused: tracing must not make a create fail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_TRACESTATE_MEMBER = re.compile(
    r"^(?:[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13}|[a-z][_0-9a-z\-*/]{0,255})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$"
)
MAX_TRACEPARENT_LEN = 256
MAX_TRACESTATE_LEN = 512
MAX_TRACESTATE_MEMBERS = 32


def parse_traceparent(value: str | None) -> str | None:
    """The header when it is a valid W3C ``traceparent``, else None. Version 00 is
    exactly four fields; a later version may add fields after them (kept as sent)."""
    if not value or len(value) > MAX_TRACEPARENT_LEN:
        return None
    value = value.strip()
    m = _TRACEPARENT.match(value)
    if m is None:
        return None
    version, trace_id, parent_id, _flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return value


def parse_tracestate(value: str | None) -> str | None:
    """The header when it is a valid W3C ``tracestate`` (at most 32 list members of
    ``key=value``, 512 characters), else None."""
    if not value or len(value) > MAX_TRACESTATE_LEN:
        return None
    members = [m.strip() for m in value.split(",")]
    members = [m for m in members if m]  # empty members are allowed and skipped
    if not members or len(members) > MAX_TRACESTATE_MEMBERS:
        return None
    if not all(_TRACESTATE_MEMBER.match(m) for m in members):
        return None
    return ",".join(members)


def trace_context(headers: Any) -> tuple[str | None, str | None]:
    """``(traceParent, traceState)`` from request headers (anything with a
    case-insensitive ``get``); ``tracestate`` only with a valid ``traceparent`` (it
    means nothing without one)."""
    parent = parse_traceparent(headers.get("traceparent"))
    if parent is None:
        return None, None
    return parent, parse_tracestate(headers.get("tracestate"))


def callback_headers(meta: Mapping[str, object]) -> dict[str, str]:
    """The trace context a task's result callback carries: the one stored at create."""
    out: dict[str, str] = {}
    parent = meta.get("traceParent")
    if isinstance(parent, str) and parent:
        out["traceparent"] = parent
        state = meta.get("traceState")
        if isinstance(state, str) and state:
            out["tracestate"] = state
    return out
