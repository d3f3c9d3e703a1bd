"""The janitor: removes terminal tasks and their results once ``tasks.retention`` has passed.

Dead-lettered tasks are not terminal-for-retention: they stay in their DLQ
until replayed or purged. Idempotency keys expire by themselves (store TTL).
"""

from __future__ import annotations

import trio

from codeqd.config import JanitorConfig
from codeqd.context import Context
from codeqd.live import Live, run_loop
from codeqd.store import now_ms


async def run(
    ctx: Context,
    live: Live[JanitorConfig],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async def step(cfg: JanitorConfig) -> int:
        before = now_ms() - int(float(ctx.config.tasks.retention) * 1000)
        return await ctx.store.cleanup(before, cfg.batch)

    await run_loop("janitor", live, ctx.shutting_down, step, task_status=task_status)
