"""The promoter: moves due delayed tasks to their ready queues and wakes claims.

Each round promotes at most ``batch`` tasks per shard in one script call per
shard; several codeqd processes may run it at once (the script re-checks each
task, so nothing is promoted twice).
"""

from __future__ import annotations

import trio

from codeqd.config import PromoterConfig
from codeqd.context import Context
from codeqd.live import Live, run_loop


async def run(
    ctx: Context,
    live: Live[PromoterConfig],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async def step(cfg: PromoterConfig) -> int:
        return await ctx.store.promote_due(limit=cfg.batch)

    await run_loop("promoter", live, ctx.shutting_down, step, task_status=task_status)
