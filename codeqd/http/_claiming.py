"""Claiming, shared by ``POST /tasks/claim`` and ``POST /tasks/claim/batch``: which
commands a worker's token may claim, the lease id a worker names, and the claim itself
with its long-poll (``waitSeconds``) on the wake-up hub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from codeqd import tracing
from codeqd.auth import Principal
from codeqd.context import Context
from codeqd.domain.errors import Forbidden, RateLimited, ValidationError
from codeqd.domain.task import MAX_WAIT_SECONDS, get_commands, get_int, get_wait
from codeqd.store import ClaimedTask, Waiter


def parse_lease_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 128:
        raise ValidationError("leaseId", "expected a string of at most 128 characters")
    return value


def claim_commands(principal: Principal, body: dict[str, Any]) -> list[str] | None:
    """The commands to claim from; None means every command of the tenant."""
    requested = get_commands(body)
    if requested is None:
        if "*" in principal.event_types:
            return None
        if not principal.event_types:
            raise Forbidden("worker token has no eventTypes")
        return list(principal.event_types)
    denied = [c for c in requested if not principal.allows_event(c)]
    if denied:
        raise Forbidden(f"token's eventTypes do not include {', '.join(denied)}", commands=denied)
    return requested


Watch = Callable[[], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def unwatched() -> AsyncIterator[None]:
    """The watch of a request whose server ends it when its client goes (Quart's)."""
    yield


async def claim_tasks(
    ctx: Context,
    principal: Principal,
    body: dict[str, Any],
    max_tasks: int,
    watch: Watch | None = None,
) -> list[ClaimedTask]:
    """Claim up to ``max_tasks``, holding the request up to ``waitSeconds`` for work;
    each task claimed gets a span in the trace it was created in.

    A claim that finds work at once never parks. One that parks does so inside
    ``watch()``, which may end the wait early by cancelling it (the client went
    away); the claim then returns no task."""
    tasks = await _claim(ctx, principal, body, max_tasks, watch or unwatched)
    for task in tasks:
        tracing.task_claimed(task.meta, principal.sub)
    return tasks


async def _claim(
    ctx: Context, principal: Principal, body: dict[str, Any], max_tasks: int, watch: Watch
) -> list[ClaimedTask]:
    cfg = ctx.config
    commands = claim_commands(principal, body)
    lease = get_int(
        body, "leaseSeconds", cfg.tasks.default_lease_seconds, 1, cfg.limits.max_lease_seconds
    )
    wait = get_wait(body.get("waitSeconds"), "waitSeconds", MAX_WAIT_SECONDS)
    assert lease is not None

    async def attempt(shards: set[int] | None = None) -> list[ClaimedTask]:
        return await ctx.store.claim(
            principal.tenant, principal.sub, commands, lease, max_tasks, shards
        )

    if wait == 0 or ctx.shutting_down.is_set():
        return await attempt()
    ingress = ctx.actor_config("ingress")
    deadline = trio.current_time() + wait
    fallback = float(ingress.poll_fallback)
    shards: set[int] | None = None  # the first look and fallback polls visit every shard
    woken: Waiter | None = None  # the waiter whose last wait a wake-up ended
    parked = False  # counted against max_waiters and watched, from its first wait on
    async with AsyncExitStack() as parking:
        while True:
            # Register before looking, so a wake-up between the look and the wait is kept.
            with ctx.hub.claim_waiter(principal.tenant, commands) as waiter:
                if parked:
                    async with ctx.hub.check(deadline) as slot:
                        tasks = await attempt(shards) if slot else []
                else:  # the first look: a claim that finds work at once never parks
                    slot, tasks = True, await attempt()
                done = (
                    not slot
                    or bool(tasks)
                    or ctx.shutting_down.is_set()
                    or trio.current_time() >= deadline
                )
                if not done:
                    if not parked:
                        await _park(ctx, parking, waiter, ingress.max_waiters, watch)
                        parked = True
                    with (
                        trio.move_on_at(ctx.hub.wait_until(deadline, fallback)),
                        ctx.hub.blocked(),
                    ):
                        await waiter.event.wait()
                    # A wake-up names the shard that got work: look only there next time.
                    shards = waiter.shards_to_check()
            if done:
                if not slot and woken is not None:
                    # Woken, but its deadline came before a slot to look: the next
                    # waiter gets the wake-up (this one's own waiter is gone by now).
                    ctx.hub.pass_on(woken)
                return tasks
            woken = waiter if waiter.event.is_set() else None
            if ctx.shutting_down.is_set():
                return []
    return []  # the watch ended the wait


async def _park(
    ctx: Context, parking: AsyncExitStack, waiter: Waiter, max_waiters: int, watch: Watch
) -> None:
    """From the claim's first wait until ``parking`` closes: counted against
    ``max_waiters`` (429 past it) and watched (``watch`` may end the wait)."""
    try:
        parking.enter_context(ctx.hub.parked(max_waiters, "claim"))
    except RateLimited:
        if waiter.event.is_set():
            ctx.hub.pass_on(waiter)  # a wake-up it got goes to the next waiter
        raise
    await parking.enter_async_context(watch())
