"""The client's one exception hierarchy, and the one place that maps an HTTP answer to it.

The class follows the HTTP status; the server's machine ``code`` only refines it
(``409`` + ``lease_lost`` is :class:`LeaseLost`), so an unknown code from a newer
server still lands in the right family.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class CodeqError(Exception):
    """Base of every error the client raises.

    ``status`` is the HTTP status (``None`` when the daemon never answered),
    ``code`` the server's machine code (e.g. ``"lease_lost"``), ``details`` its
    structured details and ``request_id`` the ``X-Request-Id`` to grep the
    daemon's log for.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details: dict[str, Any] = dict(details or {})
        self.request_id = request_id

    def __str__(self) -> str:
        prefix = " ".join(str(p) for p in (self.status, self.code) if p)
        return f"{prefix}: {self.message}" if prefix else self.message


class BadRequest(CodeqError):
    """400/413/415/422: the request itself is wrong (the message names the field)."""


class Unauthorized(CodeqError):
    """401: the token is missing, expired or not signed by a key the daemon trusts."""


class Forbidden(CodeqError):
    """403: a valid token without the scope, event type or role the call needs."""


class NotFound(CodeqError):
    """404: no such task for this tenant (or no such route on an older daemon)."""


class Conflict(CodeqError):
    """409: the task is not in a state that allows the call (e.g. cancel of a terminal task)."""


class LeaseLost(Conflict):
    """409 on a lease holder's call: the task is no longer ours.

    Raised for ``heartbeat``, ``nack``, ``abandon``, ``complete`` and ``fail``
    when the lease expired and the task was requeued, was claimed again (the
    ``leaseId`` fence), belongs to another worker, or is already terminal. The
    right reaction is always the same: stop working on the task and drop it.
    """


class RateLimited(CodeqError):
    """429: back off for ``retry_after`` seconds (from ``Retry-After`` or the body)."""

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServiceUnavailable(CodeqError):
    """503 after the client's retries: the daemon's store is unavailable.

    ``retry_after`` is the daemon's hint in seconds, when it gave one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Unreachable(ServiceUnavailable):
    """No answer after the client's retries: connection refused, reset or timed out.

    The underlying ``httpx`` exception is the ``__cause__``. A subclass of
    :class:`ServiceUnavailable` so one ``except`` covers "try again later".
    """


class ServerError(CodeqError):
    """A 5xx other than 503, or an answer that does not parse as the API's JSON."""


#: Server codes that refine the class chosen by the status.
_REFINED: dict[str, type[CodeqError]] = {
    "lease_lost": LeaseLost,
    "not_lease_holder": LeaseLost,
}

#: Class by code alone, for per-item errors of batch answers (which carry no status).
_BY_CODE: dict[str, type[CodeqError]] = {
    "bad_request": BadRequest,
    "validation_error": BadRequest,
    "malformed_json": BadRequest,
    "payload_too_large": BadRequest,
    "unsupported_media_type": BadRequest,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "task_not_found": NotFound,
    "route_not_found": NotFound,
    "conflict": Conflict,
    "invalid_state": Conflict,
    "already_terminal": Conflict,
    "rate_limited": RateLimited,
    "store_unavailable": ServiceUnavailable,
    "unavailable": ServiceUnavailable,
    **_REFINED,
}


def _class_for_status(status: int) -> type[CodeqError]:
    if status in (400, 413, 415, 422):
        return BadRequest
    if status == 401:
        return Unauthorized
    if status == 403:
        return Forbidden
    if status == 404:
        return NotFound
    if status == 409:
        return Conflict
    if status == 429:
        return RateLimited
    if status == 503:
        return ServiceUnavailable
    if status >= 500:
        return ServerError
    return CodeqError


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (the delta-seconds form; dates are ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


def error_from_response(
    status: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
    *,
    lease_call: bool = False,
) -> CodeqError:
    """The exception for an error answer.

    ``body`` is the decoded JSON (or anything else, for a proxy's HTML page).
    ``lease_call`` marks a lease holder's call, where every 409 means the task
    is no longer ours and becomes :class:`LeaseLost`.
    """
    headers = headers or {}
    doc = body if isinstance(body, Mapping) else {}
    message = doc.get("error")
    if not isinstance(message, str) or not message:
        message = f"HTTP {status}"
    code = doc.get("code") if isinstance(doc.get("code"), str) else None
    details = doc.get("details") if isinstance(doc.get("details"), Mapping) else None
    kw: dict[str, Any] = {
        "status": status,
        "code": code,
        "details": details,
        "request_id": headers.get("x-request-id"),
    }
    cls = _class_for_status(status)
    refined = _REFINED.get(code or "")
    # not_lease_holder is a 403 from codeqd 0.2 and codeQ, a 409 before: LeaseLost.
    if refined is not None and (issubclass(refined, cls) or code == "not_lease_holder"):
        cls = refined
    elif cls is Conflict and lease_call:
        cls = LeaseLost
    if cls is RateLimited:
        after = parse_retry_after(headers.get("retry-after"))
        if after is None and isinstance(doc.get("retryAfterSeconds"), int | float):
            after = float(doc["retryAfterSeconds"])
        return RateLimited(message, retry_after=1.0 if after is None else after, **kw)
    if cls is ServiceUnavailable:
        return ServiceUnavailable(
            message, retry_after=parse_retry_after(headers.get("retry-after")), **kw
        )
    return cls(message, **kw)


def error_from_item(item: Mapping[str, Any]) -> CodeqError:
    """The exception for one failed item of a batch answer (``{"error","code",...}``)."""
    status = item.get("status")
    if isinstance(status, int) and not isinstance(status, bool) and status >= 400:
        return error_from_response(status, item)
    message = item.get("error")
    code = item.get("code") if isinstance(item.get("code"), str) else None
    details = item.get("details") if isinstance(item.get("details"), Mapping) else None
    cls = _BY_CODE.get(code or "", BadRequest)
    text = message if isinstance(message, str) and message else "rejected"
    if cls is RateLimited:
        return RateLimited(text, code=code, details=details)
    return cls(text, code=code, details=details)
