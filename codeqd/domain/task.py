"""Tasks on the wire: validation of what clients send, rendering of what they get.

Times are kept as integer milliseconds in the store and rendered as RFC 3339
UTC; payloads and results are kept as the JSON text the client sent and
embedded unparsed (``orjson.Fragment``) when rendered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from codeqd.domain.errors import BadRequest, ValidationError
from codeqd.domain.states import TERMINAL

COMMAND_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
#: The longest a claim is held (``waitSeconds``); a longer wait is clamped, as codeQ does.
MAX_WAIT_SECONDS = 30
#: The longest ``GET /tasks/:id/result?waitSeconds`` is held (clamped, as codeQ does).
MAX_RESULT_WAIT_SECONDS = 60
MAX_WEBHOOK_LEN = 2048
MAX_IDEMPOTENCY_KEY_LEN = 256
MAX_REASON_LEN = 4096
#: The furthest a task can be scheduled ahead (``delaySeconds``, ``runAt``).
MAX_DELAY_SECONDS = 365 * 86400
#: The last instant RFC 3339 renders (9999-12-31T23:59:59.999Z), in ms since the epoch.
_MAX_RENDERABLE_MS = 253402300799999


@lru_cache(maxsize=4096)
def _utc_second(seconds: int) -> str:
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}"


def _utc_ms(ms: int) -> str:
    return f"{_utc_second(ms // 1000)}.{ms % 1000:03d}Z"


_RENDERED: dict[int | float, str] = {}


def rfc3339(ms: int | float | None) -> str | None:
    # Cached per millisecond (and per second below that, ``_utc_second``): rendering
    # tasks (4 times each) was the top self-time frame of the batch endpoints in the
    # profile; the tasks of a batch share their timestamps, made by one script call. The
    # cache is a plain dict (a hit is one lookup: ~0.16 us, against ~0.86 us through the
    # clamping and an lru_cache), emptied when it holds 8,192 times.
    if ms is None:
        return None
    out = _RENDERED.get(ms)
    if out is None:
        # Clamped, so that rendering never fails on what is stored (validation keeps
        # times in range at the door; this keeps a bad record from answering 500 for ever).
        out = _utc_ms(min(max(int(ms), 0), _MAX_RENDERABLE_MS))
        if len(_RENDERED) >= 8192:
            _RENDERED.clear()
        _RENDERED[ms] = out
    return out


def parse_rfc3339(value: str, field: str) -> int:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValidationError(field, "expected an RFC 3339 timestamp") from None
    if dt.tzinfo is None:
        raise ValidationError(field, "timestamp needs a timezone (e.g. 'Z')")
    try:
        return int(dt.timestamp() * 1000)
    except (OverflowError, ValueError):  # e.g. year 9999 at -14:00 is past year 9999 UTC
        raise ValidationError(field, "timestamp out of range") from None


def require_object(body: Any, what: str = "body") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return body


def get_int(body: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(name, f"expected an integer, got {type(value).__name__}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValidationError(name, "expected an integer")
        value = int(value)
    if not lo <= value <= hi:
        raise ValidationError(name, f"must be between {lo} and {hi}, got {value}")
    return value


def get_wait(value: Any, name: str, longest: int, *, query: bool = False) -> int:
    """A ``waitSeconds`` (a JSON number, or with ``query`` the query string's text): a
    whole number of seconds, at least 0; a longer wait than ``longest`` is clamped to
    it, not refused (as codeQ does)."""
    if value is None or (query and value == ""):
        return 0
    if query:
        try:
            value = int(value)
        except ValueError:
            raise ValidationError(name, "expected an integer") from None
    wait = get_int({name: value}, name, 0, 0, 2**63 - 1) or 0
    return min(wait, longest)


def get_str(body: dict[str, Any], name: str, max_len: int, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ValidationError(name, "is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(name, f"expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise ValidationError(name, f"longer than {max_len} characters")
    return value


def check_command(value: Any, name: str = "command") -> str:
    if not isinstance(value, str):
        raise ValidationError(name, "expected a string")
    if not COMMAND_RE.match(value):
        raise ValidationError(name, "must be 1-128 characters of [A-Za-z0-9_.:-]")
    return value


def get_commands(body: dict[str, Any]) -> list[str] | None:
    value = body.get("commands")
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ValidationError("commands", "expected a non-empty list of command names")
    if len(value) > 256:
        raise ValidationError("commands", "at most 256 commands")
    return list(dict.fromkeys(check_command(v, "commands") for v in value))


# A run of 20 digits, found as twenty zeros once every digit is a zero: two passes in C
# (translate, then find), ~15x faster than the regex \d{20}, which retries at every digit
# (195 us for a 15 KB batch body, about 2 % of the batch endpoints' CPU).
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_TWENTY_DIGITS = b"0" * 20
_INT_RANGE = (-(2**63), 2**64 - 1)


class _Inexact(int):
    """An integer literal that orjson would have read as a rounded float."""


def _int_literal(text: str) -> int:
    value = int(text)
    return value if _INT_RANGE[0] <= value <= _INT_RANGE[1] else _Inexact(value)


def _inexact_path(body: Any) -> str | None:
    stack: list[tuple[Any, str]] = [(body, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Inexact):
            return path or "body"
        if isinstance(node, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
    return None


def refuse_inexact_integers(data: str | bytes) -> None:
    """orjson keeps integers of up to 64 bits exactly and reads longer ones as floats,
    silently rounded. Refuse those instead (400 naming where the integer is): a rare
    body with a run of 20 digits is parsed again by the standard library, which sees
    integer literals as such."""
    raw = data.encode() if isinstance(data, str) else data
    if _TWENTY_DIGITS not in raw.translate(_DIGITS_TO_ZERO):
        return
    try:
        where = _inexact_path(json.loads(raw, parse_int=_int_literal))
    except RecursionError:
        raise ValidationError("body", "JSON nested too deeply") from None
    if where is not None:
        raise ValidationError(
            where, "integer beyond 64 bits (it would lose precision); send it as a string"
        )


def json_depth_ok(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return False
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return True


def check_webhook(value: str | None, name: str = "webhook") -> str | None:
    """An absolute http(s) URL we can call: a host that httpx accepts (so a stored URL
    never fails to parse at send time), at most ``MAX_WEBHOOK_LEN`` characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(name, "expected a URL string")
    if len(value) > MAX_WEBHOOK_LEN:
        raise ValidationError(name, f"longer than {MAX_WEBHOOK_LEN} characters")
    if not _URL_SHAPE.match(value) or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        raise ValidationError(name, "must be an absolute http:// or https:// URL")
    try:
        port = urlsplit(value).port  # raises ValueError for a port out of range
    except ValueError:
        raise ValidationError(name, "is not a valid URL") from None
    if port == 0:
        raise ValidationError(name, "port 0 is not a destination")
    _check_host(value, name)
    return value


_URL_SHAPE = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)
_DNS_HOST = re.compile(r"^[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*\.?$")
MAX_HOST_LEN = 253


def _check_host(value: str, name: str) -> None:
    """The host as httpx will see it: parsed by ``httpx.URL`` (IDNA-encoded, IPv6
    literals checked), then a DNS name of at most 253 characters in labels of 1-63, or
    an IP literal. Anything httpx refuses here would fail every delivery attempt."""
    try:
        url = httpx.URL(value)
        host = url.raw_host.decode("ascii")
        url.host  # noqa: B018 - decodes IDNA back; raises for labels like xn--n3h
    except Exception:  # InvalidURL, and idna's own errors (ValueError subclasses)
        raise ValidationError(name, "has a host that is not a valid hostname") from None
    if url.scheme not in ("http", "https") or not host:
        raise ValidationError(name, "must be an absolute http:// or https:// URL with a host")
    if ":" in host:  # an IPv6 literal; httpx has checked it
        return
    if len(host) > MAX_HOST_LEN or not _DNS_HOST.match(host):
        raise ValidationError(name, "has a host that is not a valid hostname")


@dataclass(frozen=True)
class NewTask:
    command: str
    payload: bytes
    priority: int
    max_attempts: int
    run_at_ms: int
    webhook: str | None
    idempotency_key: str | None
    #: W3C trace context of the create request (``codeqd.domain.tracecontext``).
    trace_parent: str | None = None
    trace_state: str | None = None
    #: The ``sub`` of the token that created it (the task's ``created`` event).
    created_by: str = ""


def parse_new_task(
    body: Any,
    *,
    now_ms: int,
    default_max_attempts: int,
    max_depth: int,
    trace: tuple[str | None, str | None] = (None, None),
    created_by: str = "",
) -> NewTask:
    """Validate a create body (SPEC §2); raises ValidationError naming the field.
    ``trace`` is the request's checked ``(traceparent, tracestate)``; ``created_by`` the
    creating token's ``sub``."""
    body = require_object(body)
    command = check_command(body.get("command"), "command") if "command" in body else None
    if command is None:
        raise ValidationError("command", "is required")
    payload = body.get("payload")
    if "payload" not in body:
        raise ValidationError("payload", "is required")
    if payload is None:  # any JSON value but null, as codeQ accepts
        raise ValidationError("payload", "must not be null")
    if not json_depth_ok(payload, max_depth):
        raise ValidationError("payload", f"nested deeper than {max_depth} levels")
    priority = get_int(body, "priority", 0, 0, 9)
    max_attempts = get_int(body, "maxAttempts", default_max_attempts, 1, 1000)
    run_at = now_ms
    delay = get_int(body, "delaySeconds", None, 0, MAX_DELAY_SECONDS)
    if delay is not None:
        run_at = now_ms + delay * 1000
    if body.get("runAt") is not None:
        raw = body["runAt"]
        if not isinstance(raw, str) or len(raw) > 64:
            raise ValidationError("runAt", "expected an RFC 3339 timestamp string")
        run_at = max(now_ms, parse_rfc3339(raw, "runAt"))
        if run_at > now_ms + MAX_DELAY_SECONDS * 1000:
            raise ValidationError(
                "runAt", f"must be at most {MAX_DELAY_SECONDS // 86400} days from now"
            )
    return NewTask(
        command=command,
        payload=orjson.dumps(payload),
        priority=priority or 0,
        max_attempts=max_attempts or default_max_attempts,
        run_at_ms=run_at,
        webhook=check_webhook(get_str(body, "webhook", MAX_WEBHOOK_LEN)),
        idempotency_key=get_str(body, "idempotencyKey", MAX_IDEMPOTENCY_KEY_LEN),
        trace_parent=trace[0],
        trace_state=trace[1] if trace[0] else None,
        created_by=created_by,
    )


_TIME_FIELDS = ("leaseUntil", "runAt", "createdAt", "updatedAt")
_OPTIONAL_FIELDS = (
    "maxAttempts",
    "tenantId",
    "workerId",
    "leaseId",
    "webhook",
    "idempotencyKey",
    "error",
    "traceParent",
    "traceState",
)


def has_result(meta: dict[str, Any]) -> bool:
    """Whether a worker's Result is stored for the task: it reported (COMPLETED, or
    FAILED by the worker). A task dead-lettered or cancelled has none."""
    status = meta["status"]
    return status == "COMPLETED" or (status == "FAILED" and not meta.get("deadLettered"))


def result_key(task_id: str) -> str:
    """The opaque ``resultKey`` of a task whose result is stored (codeQ sets one)."""
    return f"result:{task_id}"


def task_to_wire(meta: dict[str, Any], payload: str | bytes | None) -> dict[str, Any]:
    """The SPEC Task object; ``payload`` is embedded as the stored JSON text. As in
    codeQ, an optional field with no value is left out, never ``null``."""
    out: dict[str, Any] = {
        "id": meta["id"],
        "command": meta["command"],
        "payload": orjson.Fragment(payload or b"{}"),
        "priority": meta.get("priority", 0),
        "status": meta["status"],
        "attempts": meta.get("attempts", 0),
    }
    for key in _OPTIONAL_FIELDS:
        if (value := meta.get(key)) is not None:
            out[key] = value
    for key in _TIME_FIELDS:
        if (value := meta.get(key)) is not None:
            out[key] = rfc3339(value)
    if meta["status"] != "IN_PROGRESS":
        out.pop("leaseId", None)
    if has_result(meta):
        out["resultKey"] = result_key(meta["id"])
    if meta.get("deadLettered"):
        out["deadLettered"] = True
    if meta.get("webhook") and meta["status"] in TERMINAL:
        # Extension: the result callback's progress (PENDING until the first attempt).
        out["webhookStatus"] = meta.get("webhookStatus", "PENDING")
        out["webhookAttempts"] = meta.get("webhookAttempts", 0)
        if meta.get("webhookError"):
            out["webhookError"] = meta["webhookError"]
    return out


def synthesized_result(meta: dict[str, Any]) -> dict[str, Any] | None:
    """A Result for a task that became terminal without a worker's report."""
    if meta["status"] not in ("FAILED", "CANCELLED"):
        return None
    out: dict[str, Any] = {
        "taskId": meta["id"],
        "status": meta["status"],
        "error": meta.get("error") or meta["status"],
        "artifacts": [],
    }
    if meta.get("updatedAt") is not None:
        out["completedAt"] = rfc3339(meta["updatedAt"])
    return out


def result_to_wire(stored: str) -> Any:
    """A stored Result (JSON text) for the wire, unparsed, unless it holds a top-level
    ``null`` (stored before optional fields were left out): then without those."""
    if ":null" not in stored:
        return orjson.Fragment(stored)
    doc = orjson.loads(stored)
    if not isinstance(doc, dict):
        return orjson.Fragment(stored)
    return {k: v for k, v in doc.items() if v is not None}
