"""The notifier: tells subscribed workers that a queue has work (stub until implemented)."""

from __future__ import annotations

import trio

from codeqd.actors._live import Live
from codeqd.config import NotifierConfig
from codeqd.context import Context


async def run(
    ctx: Context, live: Live[NotifierConfig], *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    await ctx.shutting_down.wait()
