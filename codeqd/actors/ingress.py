"""The ingress: the HTTP API, served by hypercorn's trio worker in this process.

Started reports the bound addresses; returns after a graceful drain once
``ctx.shutting_down`` is set (long-polls answered at once, in-flight requests
given ``shutdown.grace_seconds``).
"""

from __future__ import annotations

import trio

from codeqd.actors._live import Live
from codeqd.config import IngressConfig
from codeqd.context import Context
from codeqd.http import serve


async def run(
    ctx: Context, live: Live[IngressConfig], *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    if not live.value.enabled:
        task_status.started([])
        return
    await serve(ctx, task_status=task_status)
