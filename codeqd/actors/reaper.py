"""The reaper: retries (with backoff) or dead-letters tasks whose lease expired.

Expired leases are read from the leases sorted set in expiry order, at most
``batch`` per shard per round; the retry script re-checks the lease, so a
heartbeat that lands first wins and two reapers never retry a task twice.
"""

from __future__ import annotations

import trio

from codeqd.config import ReaperConfig
from codeqd.context import Context
from codeqd.live import Live, run_loop


async def run(
    ctx: Context,
    live: Live[ReaperConfig],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async def step(cfg: ReaperConfig) -> int:
        return await ctx.store.reap_expired(limit=cfg.batch)

    await run_loop("reaper", live, ctx.shutting_down, step, task_status=task_status)
