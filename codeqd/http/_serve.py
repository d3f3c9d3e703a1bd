"""Serve the API with hypercorn's trio worker (stub — being implemented)."""

from __future__ import annotations

import trio

from codeqd.context import Context


async def serve(
    ctx: Context,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``ctx.shutting_down`` is set, then drain within the grace period.

    ``task_status.started(addresses)`` once the socket listens. Cancelling this
    aborts in-flight requests; set ``ctx.shutting_down`` for a graceful stop.
    """
    raise NotImplementedError
