"""Serve the API with hypercorn's trio worker until a graceful stop."""

from __future__ import annotations

import math
from functools import partial

import trio
from hypercorn.trio import serve as hypercorn_serve

from codeqd import metrics
from codeqd.context import Context
from codeqd.domain.task import MAX_WAIT_SECONDS
from codeqd.http._app import create_app
from codeqd.http._hypercorn import Config as HyperConfig
from codeqd.http._pings import Pings
from codeqd.store import HUB_HINTS, HUB_OWN


def hypercorn_config(ctx: Context, bind: str | None = None) -> HyperConfig:
    ingress = ctx.config.actors.ingress
    cfg = HyperConfig()
    cfg.codeqd_h2c = ingress.h2c
    cfg.bind = [bind or ingress.bind]
    cfg.accesslog = None
    cfg.errorlog = None
    cfg.graceful_timeout = float(ctx.config.shutdown.grace_seconds)
    cfg.keep_alive_timeout = float(ingress.keep_alive_timeout)
    # hypercorn's read timeout watches every read of a connection: idle between requests,
    # a long-poll's silent wait, a body. Were it shorter than the keep-alive timeout, a
    # connection would stop being read yet stay open until the keep-alive close (a
    # request sent on it hangs); shorter than the longest long-poll, it would cut
    # long-polls. So it is only a backstop, past all of them: slow bodies get 408 from
    # the app (BODY_TIMEOUT), idle connections and slow request heads are closed by the
    # keep-alive timeout.
    cfg.read_timeout = (
        math.ceil(
            max(float(ingress.request_timeout), float(ingress.keep_alive_timeout), MAX_WAIT_SECONDS)
        )
        + 5
    )
    # Request line plus headers still arriving; past it hypercorn answers 431 and closes.
    cfg.h11_max_incomplete_size = ctx.config.limits.header_bytes
    cfg.max_app_queue_size = 10
    # A worker stream's message is bounded like a request body.
    cfg.websocket_max_message_size = ctx.config.limits.body_bytes
    cfg.backlog = ingress.backlog
    return cfg


async def serve(
    ctx: Context,
    *,
    bind: str | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``ctx.shutting_down`` is set, then drain within the grace period.

    ``bind`` overrides ``actors.ingress.bind`` (``fd://N`` for an inherited socket).

    ``task_status.started(addresses)`` once the socket listens. On shutdown every
    long-poll returns at once (204 / 404 ``result_not_found``) and in-flight requests get
    ``shutdown.grace_seconds`` to finish. Cancelling this aborts immediately.
    """
    app = create_app(ctx)
    streams = ctx.config.streams
    pings = Pings.for_periods(float(streams.ping_interval), float(streams.ping_timeout))
    app.codeqd_pings = pings  # type: ignore[attr-defined]  # the streams' pings

    async def shutdown_trigger() -> None:
        await ctx.shutting_down.wait()
        ctx.hub.close()

    async with trio.open_nursery() as nursery:
        wakeups = ctx.store.wakeups
        inbox = wakeups.inbox("ingress", HUB_HINTS, size=4096, own=HUB_OWN)
        nursery.start_soon(ctx.hub.run, inbox)
        nursery.start_soon(metrics.flush_every)  # this process's tallies -> prometheus
        nursery.start_soon(pings.run)
        if not wakeups.running:  # the supervisor's process starts it for every actor
            await nursery.start(wakeups.run)
        # Group commit of single creates, claims and results: ingress -> the store's writer.
        await nursery.start(ctx.store.writer.run)
        async with trio.open_nursery() as server:
            binds = await server.start(
                partial(
                    hypercorn_serve,
                    app,
                    hypercorn_config(ctx, bind),
                    shutdown_trigger=shutdown_trigger,
                )
            )
            task_status.started(list(binds))
        nursery.cancel_scope.cancel()
    wakeups.remove(inbox)
