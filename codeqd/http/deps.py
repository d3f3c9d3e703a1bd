"""Route dependencies: authentication, authorization and rate limits, declared per route."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, Literal, ParamSpec, TypeVar

from quart import g, request

from codeqd.auth import ALL_TENANTS, Principal
from codeqd.context import Context
from codeqd.domain.errors import Forbidden, RateLimited, ValidationError
from codeqd.http._request import app_context
from codeqd.metrics import RATELIMIT_REJECTED

P = ParamSpec("P")
R = TypeVar("R")

Audience = Literal["producer", "worker", "admin", "any"]
RateOperation = Literal["create", "claim", "cleanup"]

#: Config bucket -> (scope, operation) as the 429 body names them (codeQ's names).
RATE_NAMES: dict[str, tuple[str, str]] = {
    "create": ("producer", "create_task"),
    "claim": ("worker", "claim"),
    "cleanup": ("admin", "cleanup"),
}


def _admin_tenant(principal: Principal, all_tenants: bool, wanted: str | None) -> Principal:
    """The tenant an admin route acts on: the token's, or for an all-tenants admin
    (tenant ``*``) the ``tenant`` query parameter (``wanted``); ``all_tenants`` routes
    accept none."""
    if principal.all_tenants:
        if wanted:
            if len(wanted) > 128 or wanted == ALL_TENANTS:
                raise ValidationError("tenant", "expected a tenant id of at most 128 characters")
            return dataclasses.replace(principal, tenant=wanted)
        if all_tenants:
            return principal
        raise ValidationError(
            "tenant",
            "an admin token for every tenant (tenant '*') must "
            "name the tenant to act on: ?tenant=<id>",
        )
    if wanted and wanted != principal.tenant:
        raise Forbidden("only an admin token with tenant '*' may act on another tenant")
    return principal


async def charge(ctx: Context, caller: Principal, rate: RateOperation, cost: int = 1) -> None:
    """Take ``cost`` tokens (one per item of the request) from the caller's ``rate``
    bucket, or raise 429. Buckets belong to the verified caller (tenant, sub, role;
    ``Principal.identity_hash``, of the token's own tenant: an admin's ``?tenant=``
    does not move it to another bucket), whichever of its tokens it uses. A cost above the
    bucket's burst is let through once the bucket is full and leaves it in debt
    (``lua/rate_limit.lua``): large batches wait, they are never refused for ever."""
    cfg = ctx.config.ratelimit
    if not cfg.enabled:
        return
    bucket = getattr(cfg, rate)
    decision = await ctx.store.take_rate(
        caller.identity_hash, rate, bucket, int(ctx.auth.clock() * 1000), cost
    )
    if not decision.allowed:
        scope, operation = RATE_NAMES[rate]
        RATELIMIT_REJECTED.labels(scope, operation).inc()
        what = f" ({cost} items; ratelimit.{rate}.burst {bucket.burst})" if cost > 1 else ""
        raise RateLimited(
            f"rate limit exceeded for {operation}{what}; retry later",
            retry_after=decision.retry_after,
            scope=scope,
            operation=operation,
        )


async def authorize(
    ctx: Context,
    authorization: str | None,
    audience: Audience,
    scope: str | None = None,
    *,
    rate: RateOperation | None = None,
    all_tenants: bool = False,
    tenant_arg: str | None = None,
    seen: Callable[[Principal], None] | None = None,
) -> Principal:
    """The caller ``authorization`` (the header) names, allowed for ``audience`` and
    ``scope`` and charged to ``rate``: what :func:`requires` checks before a route runs.
    ``tenant_arg`` is an admin route's ``?tenant=``. ``seen`` learns the principal as
    soon as the token is verified (for the request log), even when a later check
    refuses it."""
    role: Literal["producer", "worker", "any"] = "producer" if audience == "admin" else audience
    principal: Principal = await ctx.auth.authenticate(authorization, role)
    if seen is not None:
        seen(principal)
    caller = principal  # charged as the token's own tenant, before ?tenant=
    if audience == "admin":
        if not principal.is_admin:
            raise Forbidden("this route needs an admin token (role ADMIN)")
        principal = _admin_tenant(principal, all_tenants, tenant_arg)
        if seen is not None:
            seen(principal)
    elif principal.tenant == ALL_TENANTS:
        raise Forbidden("tenant '*' is only valid on /admin routes")
    if scope is not None and scope not in principal.scopes:
        raise Forbidden(f"token lacks the {scope!r} scope", scope=scope)
    if rate is not None:
        await charge(ctx, caller, rate)
    return principal


def requires(
    audience: Audience,
    scope: str | None = None,
    *,
    rate: RateOperation | None = None,
    all_tenants: bool = False,
) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    """Verify the bearer token for ``audience`` (and ``scope``) before the route runs;
    the route receives the ``Principal`` as its first argument.

    ``rate`` names the ``[ratelimit]`` bucket charged one token per request, per
    verified caller (after the token is verified, so unverified tokens never create
    buckets); a route that charges per item leaves ``rate`` out and calls
    :func:`charge` once it knows the count. Admin routes act on the
    admin's tenant; ``all_tenants`` lets an all-tenants admin omit ``?tenant=``, and the
    route then sees tenant ``*``.
    """

    def decorate(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @wraps(fn)
        async def route(*args: Any, **kwargs: Any) -> R:
            def seen(principal: Principal) -> None:
                g.principal = principal

            principal = await authorize(
                app_context(),
                request.headers.get("Authorization"),
                audience,
                scope,
                rate=rate,
                all_tenants=all_tenants,
                tenant_arg=request.args.get("tenant") if audience == "admin" else None,
                seen=seen,
            )
            return await fn(principal, *args, **kwargs)

        return route

    return decorate
