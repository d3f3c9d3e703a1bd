"""Errors only the HTTP layer raises: about the request itself, not about a task.

They are ``CodeqError`` subclasses, so the one error mapper (``codeqd.http._app``)
renders them as ``{"error", "code", "details"}`` like every other error.
"""

from __future__ import annotations

from codeqd.domain.errors import CodeqError


class _ClosesConnection(CodeqError):
    """An answer after which the connection cannot carry another request: the rest of
    the request (a body too large or one that stopped arriving, headers past the limit)
    was never read."""

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


class PayloadTooLarge(_ClosesConnection):
    status = 413
    code = "payload_too_large"


class RequestTimeout(_ClosesConnection):
    status = 408
    code = "request_timeout"


class HeadersTooLarge(_ClosesConnection):
    status = 431
    code = "headers_too_large"


class UnsupportedMediaType(CodeqError):
    status = 415
    code = "unsupported_media_type"
