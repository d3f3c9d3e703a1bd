"""Route dependencies: authentication and authorization, declared per route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, Literal, ParamSpec, TypeVar

from quart import g, request

from codeqd.auth import Principal
from codeqd.domain.errors import Forbidden
from codeqd.http._app import app_context

P = ParamSpec("P")
R = TypeVar("R")

Audience = Literal["producer", "worker", "admin", "any"]


def requires(
    audience: Audience, scope: str | None = None
) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    """Verify the bearer token for ``audience`` (and ``scope``) before the route runs;
    the route receives the ``Principal`` as its first argument."""

    def decorate(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @wraps(fn)
        async def route(*args: Any, **kwargs: Any) -> R:
            auth = app_context().auth
            role: Literal["producer", "worker", "any"] = (
                "producer" if audience == "admin" else audience
            )
            principal: Principal = await auth.authenticate(
                request.headers.get("Authorization"), role
            )
            g.principal = principal
            if audience == "admin" and not principal.is_admin:
                raise Forbidden("this route needs an admin token (role ADMIN)")
            if scope is not None and scope not in principal.scopes:
                raise Forbidden(f"token lacks the {scope!r} scope")
            return await fn(principal, *args, **kwargs)

        return route

    return decorate
