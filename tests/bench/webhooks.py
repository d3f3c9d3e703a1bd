"""Webhook figures (not part of the suite): ``python -m tests.bench.webhooks REDIS_URL [N]``.

1. Throughput: N terminal tasks with a webhook already in the outbox, then the
   dispatcher (concurrency 64) drains them to a fast receiver: callbacks/s.
2. Latency: results submitted at a steady rate while the dispatcher runs; delay from
   just before the result call to the callback's receipt (p50/p99).
The receiver (the h11 test receiver) runs in a child process, so it does not share
the dispatcher's core.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import trio

from codeqd import config as cfgmod
from codeqd import logsetup
from codeqd.actors.dispatcher import Dispatcher
from codeqd.auth import Authenticator
from codeqd.context import Context
from codeqd.domain.task import NewTask
from codeqd.live import Live
from codeqd.store import Store, WakeHub, connect
from codeqd.store._outbox import Outbox
from tests.integration.conftest import make_config
from tests.integration.webhooks._receiver import Receiver


def _receiver_process(port_file: str, log_file: str) -> None:
    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            r = await Receiver(200).start(nursery)
            Path(port_file).write_text(str(r.port))
            seen = 0
            while True:
                await r.wait_for(seen + 1, timeout=3600)
                with open(log_file, "a") as f:
                    for req in r.requests[seen:]:
                        f.write(json.dumps([req.json()["taskId"], time.time()]) + "\n")
                seen = len(r.requests)

    trio.run(serve)


async def make_terminal(store: Store, url: str) -> tuple[str, float]:
    meta, _, _ = await store.create("bench", NewTask("cb", b"{}", 0, 5, 0, url, None))
    (claimed,) = await store.claim("bench", "w", ["cb"], 60)
    before = time.time()
    await store.report(
        "bench",
        meta["id"],
        "w",
        claimed.meta["leaseId"],
        "COMPLETED",
        {},
        None,
        [],
    )
    return meta["id"], before


async def main(redis_url: str, n: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    port_file, log_file = tmp / "port", tmp / "received"
    child = multiprocessing.get_context("spawn").Process(
        target=_receiver_process, args=(str(port_file), str(log_file)), daemon=True
    )
    child.start()
    with trio.fail_after(30):
        while not port_file.exists():
            await trio.sleep(0.05)  # polls: the receiver child writes its port when listening
    url = f"http://127.0.0.1:{port_file.read_text()}/hook"
    config = make_config(tmp, webhooks={"hmac_secret": "bench", "deny_private_networks": False})
    logsetup.configure(cfgmod.LogConfig(level="warning"))
    async with connect(config, redis_url) as store, trio.open_nursery() as nursery:
        await store.command(store.client.flushall)
        await store.init_keyspace()
        ctx = Context(config=config, store=store, hub=WakeHub(), auth=Authenticator(config))
        for _ in range(n):
            await make_terminal(store, url)
        outbox = Outbox(store)
        t0 = time.monotonic()
        await nursery.start(Dispatcher(ctx, Live(cfgmod.DispatcherConfig(concurrency=64))).run)
        with trio.fail_after(300):
            while await outbox.pending():
                await trio.sleep(0.01)  # polls the outbox: what is measured is its draining
        took = time.monotonic() - t0
        print(f"throughput: {n} callbacks in {took:.2f}s = {n / took:.0f}/s (concurrency 64)")

        m, rate = 2000, 200
        sent: dict[str, float] = {}
        pace = trio.current_time()
        for i in range(m):
            task_id, before = await make_terminal(store, url)
            sent[task_id] = before
            await trio.sleep_until(pace + (i + 1) / rate)
        with trio.fail_after(300):
            while await outbox.pending():
                await trio.sleep(0.01)  # polls the outbox until the last callback is out
        got = dict(json.loads(line) for line in log_file.read_text().splitlines())
        delays = sorted((got[t] - s) * 1000 for t, s in sent.items())
        p50, p99 = delays[len(delays) // 2], delays[int(len(delays) * 0.99) - 1]
        print(
            f"latency at {rate} results/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"max {delays[-1]:.1f} ms (result call -> callback received)"
        )
        ctx.shutting_down.set()
        nursery.cancel_scope.cancel()
    child.kill()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5000)
