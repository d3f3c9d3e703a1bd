"""An ingress child process: serves the API on a listening socket inherited from the
ingress actor (``--fd``), with its own store pool and wake-up listener.

Reports readiness by writing one byte to ``--ready-fd``; SIGTERM drains like
the single-process daemon (long-polls answered, in-flight requests given
``shutdown.grace_seconds``); a second signal stops at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

import structlog
import trio

from codeqd import config as cfgmod
from codeqd import logsetup, runtime, tracing
from codeqd.auth import Authenticator
from codeqd.context import Context
from codeqd.http import serve
from codeqd.store import WakeHub, connect

log = structlog.get_logger("codeqd.ingress")


async def _serve(config: cfgmod.Config, fd: int, ready_fd: int, store_url: str) -> None:
    shutting_down = trio.Event()
    forced = trio.Event()
    ready = False
    try:
        # Signals first: a stop must work while the child is still starting.
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def on_signals() -> None:
                    async for _ in signals:
                        if shutting_down.is_set() or not ready:  # forced, or nothing to drain
                            forced.set()
                            nursery.cancel_scope.cancel()
                        shutting_down.set()

                nursery.start_soon(on_signals)
                async with tracing.running(config.tracing), connect(config, store_url) as store:
                    ctx = Context(
                        config=config,
                        store=store,
                        hub=WakeHub.for_config(config),
                        auth=Authenticator(config),
                        shutting_down=shutting_down,
                        forced=forced,
                    )
                    async with trio.open_nursery() as server:
                        await server.start(
                            lambda task_status: serve(
                                ctx, bind=f"fd://{fd}", task_status=task_status
                            )
                        )
                        ready = True
                        os.write(ready_fd, b"1")
                        os.close(ready_fd)
                    # serve() returns once a signal has set shutting_down and it drained
                nursery.cancel_scope.cancel()
    except* Exception:
        if not forced.is_set():
            raise
        # A forced stop tears connections down mid-step: their errors are expected.


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="codeqd-ingress-child")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--ready-fd", type=int, required=True)
    p.add_argument("--store-url", required=True)
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--config")
    args = p.parse_args(argv)
    runtime.tune()
    config = cfgmod.load(args.config)
    logsetup.configure(config.log)
    structlog.contextvars.bind_contextvars(ingress=args.index)
    trio.run(_serve, config, args.fd, args.ready_fd, args.store_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
