"""One exception hierarchy for everything a request can get wrong.

Each class maps to exactly one HTTP status; the HTTP layer renders any
``CodeqError`` as ``{"error", "code", "details"}`` in one place.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CodeqError(Exception):
    """Base of every error that is the client's or the environment's doing."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.details = details

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code, "details": self.details}


class BadRequest(CodeqError):
    status = 400
    code = "bad_request"


class ValidationError(BadRequest):
    """A field has the wrong type or an out-of-range value; ``field`` names it."""

    code = "validation_error"

    def __init__(self, field: str, message: str, **details: Any) -> None:
        super().__init__(f"{field}: {message}", field=field, **details)
        self.field = field


class Unauthorized(CodeqError):
    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="codeq"'}


class Forbidden(CodeqError):
    status = 403
    code = "forbidden"


class NotFound(CodeqError):
    status = 404
    code = "not_found"


class Conflict(CodeqError):
    status = 409
    code = "conflict"


class RateLimited(CodeqError):
    status = 429
    code = "rate_limited"

    def __init__(
        self, message: str, *, retry_after: float, scope: str = "", operation: str = ""
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.scope = scope
        self.operation = operation

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, int(self.retry_after + 0.999)))}

    def body(self) -> dict[str, Any]:
        return {
            "error": self.message,
            "code": self.code,
            "scope": self.scope,
            "operation": self.operation,
            "retryAfterSeconds": max(1, int(self.retry_after + 0.999)),
        }


class StoreUnavailable(CodeqError):
    status = 503
    code = "store_unavailable"

    def __init__(self, message: str = "the task store is unavailable", retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(CodeqError):
    status = 503
    code = "unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class TaskNotFound(NotFound):
    code = "task_not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} not found")


class LeaseLost(Conflict):
    code = "lease_lost"


class InvalidState(Conflict):
    code = "invalid_state"
