"""The metrics actor: samples queue depths into gauges for ``/metrics``.

Counters are kept where things happen (the store layer, the HTTP layer, the
supervisor); only the depths need sampling, ``interval`` apart, at most
``batch`` queues per round, summed over tenants by command.
"""

from __future__ import annotations

import trio

from codeqd import metrics
from codeqd.actors._live import Live, run_loop
from codeqd.config import MetricsConfig
from codeqd.context import Context


async def run(
    ctx: Context, live: Live[MetricsConfig], *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async def step(cfg: MetricsConfig) -> int:
        depths: dict[str, list[int]] = {}
        for q in await ctx.store.all_queue_stats(cfg.batch):
            d = depths.setdefault(q.command, [0, 0, 0, 0])
            for i, n in enumerate((q.ready, q.delayed, q.in_progress, q.dlq)):
                d[i] += n
        for command, (ready, delayed, in_progress, dlq) in depths.items():
            for queue, n in (("ready", ready), ("delayed", delayed),
                             ("in_progress", in_progress), ("dlq", dlq)):
                metrics.QUEUE_DEPTH.labels(command, queue).set(n)
            metrics.DLQ_DEPTH.labels(command).set(dlq)
        return 0  # always a full sleep: sampling is not a backlog

    await run_loop("metrics", live, ctx.shutting_down, step, task_status=task_status)
