"""The metrics actor: samples queue depths into gauges for ``/metrics``.

Counters are kept where things happen (the store layer, the HTTP layer, the
supervisor, the webhook actors); only the depths and the live subscriptions
(of tenants that have queues) need sampling, ``interval`` apart, at most
``batch`` queues per round, summed over tenants by command.
"""

from __future__ import annotations

import trio

from codeqd import metrics
from codeqd.config import MetricsConfig
from codeqd.context import Context
from codeqd.live import Live, run_loop


async def run(
    ctx: Context,
    live: Live[MetricsConfig],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    subscriptions = ctx.store.subscriptions

    async def step(cfg: MetricsConfig) -> int:
        queues = await ctx.store.all_queues(cfg.batch)
        depths: dict[str, list[int]] = {}
        for ten, command in queues:
            q = await ctx.store.queue_stats_escaped(ten, command)
            d = depths.setdefault(q.command, [0, 0, 0, 0])
            for i, n in enumerate((q.ready, q.delayed, q.in_progress, q.dlq)):
                d[i] += n
        for command, (ready, delayed, in_progress, dlq) in depths.items():
            for queue, n in (
                ("ready", ready),
                ("delayed", delayed),
                ("in_progress", in_progress),
                ("dlq", dlq),
            ):
                metrics.QUEUE_DEPTH.labels(command, queue).set(n)
            metrics.DLQ_DEPTH.labels(command).set(dlq)
        # Subscriptions of the tenants that have queues, counted per event type.
        active: dict[str, int] = dict.fromkeys(depths, 0)
        for ten in sorted({ten for ten, _ in queues}):
            for sub in await subscriptions.active(ten):
                for event in sub.get("eventTypes") or ():
                    active[event] = active.get(event, 0) + 1
        for command, n in active.items():
            metrics.SUBSCRIPTIONS_ACTIVE.labels(command).set(n)
        return 0  # always a full sleep: sampling is not a backlog

    await run_loop("metrics", live, ctx.shutting_down, step, task_status=task_status)
