"""The store's own cost of the hot scripts, without the daemon: ``N`` tasks created in
batches of 500, claimed ``B`` at a time (claim.lua), reported ``B`` at a time
(result_batch.lua), through codeqd's store API against a fresh redis-server or KVRocks.

  python -m tests.bench.script_cost [--store redis|kvrocks] [--tasks N] [--batch B]
                                    [--rounds R]

Per phase, per task: on redis-server, the EVALSHA time the server itself counts (``INFO
commandstats``: only the server's work, whatever the client costs); on KVRocks (whose
commandstats leave out a script's inner calls), the server process's CPU. On
redis-server also the memory a finished task holds beyond a pending one (``used_memory``
after the results, against before the claims). Each round starts a fresh server; the
medians are printed last. The VM's phases move these figures by ±20 % between runs:
compare two commits by interleaving their runs (``PYTHONPATH=<checkout>``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import trio

from codeqd import config as cfgmod
from codeqd.domain.task import parse_new_task
from codeqd.store import Store, connect, now_ms
from codeqd.store._batch import Report, create_batch, report_batch
from tests.bench._procs import cpu_seconds
from tests.conftest import KvrocksServer, RedisServer, kvrocks_binary


async def _info(store: Store, section: str) -> dict[str, Any]:
    return await store.client.info(section)  # type: ignore[no-any-return]


async def one_round(kind: str, tasks: int, batch: int) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="codeqd-script-cost-"))
    server = KvrocksServer(workdir) if kind == "kvrocks" else RedisServer(workdir)
    server.start()
    assert server.proc is not None
    pid = server.proc.pid

    async def cost(store: Store) -> float:  # µs so far: the server's own count, or its CPU
        if kind == "kvrocks":
            return cpu_seconds(pid) * 1e6
        return float((await _info(store, "commandstats"))["cmdstat_evalsha"]["usec"])

    try:
        config = cfgmod._build(cfgmod.Config, {"state_dir": str(workdir)}, "")
        async with connect(config, server.url) as store:
            await store.identify()
            await store.init_keyspace()
            task = parse_new_task(
                {"command": "bench.cost", "payload": {"n": 1, "s": "hello"}},
                now_ms=now_ms(),
                default_max_attempts=5,
                max_depth=32,
                created_by="bench-producer",
            )
            for _ in range(tasks // 500):
                await create_batch(store, "default", [task] * 500)
            memory0 = int((await _info(store, "memory")).get("used_memory", 0))
            t0 = await cost(store)
            claimed = []
            while got := await store.claim("default", "bench-worker", ["bench.cost"], 300, batch):
                claimed.append(got)
            t1 = await cost(store)
            for got in claimed:
                reports = [
                    Report(c.meta["id"], c.meta["leaseId"], "COMPLETED", {"ok": True}, None, [])
                    for c in got
                ]
                await report_batch(store, "default", "bench-worker", reports)
            t2 = await cost(store)
            memory = int((await _info(store, "memory")).get("used_memory", 0)) - memory0
        n = sum(len(g) for g in claimed)
        assert n == tasks // 500 * 500, n
        out = {"claim": (t1 - t0) / n, "result": (t2 - t1) / n}
        if kind == "redis":
            out["memory"] = memory / n
        return out
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("redis", "kvrocks"), default="redis")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.store == "kvrocks" and kvrocks_binary() is None:
        raise SystemExit("no kvrocks binary (../shared/kvrocks/kvrocks, $CODEQD_TEST_KVROCKS_BIN)")
    what = "EVALSHA µs (server's count)" if args.store == "redis" else "server CPU µs"
    rounds = []
    for i in range(args.rounds):
        r = trio.run(one_round, args.store, args.tasks, args.batch)
        rounds.append(r)
        mem = f", {r['memory']:.0f} B held per finished task" if "memory" in r else ""
        print(f"round {i + 1}: claim {r['claim']:.1f}, result {r['result']:.1f} {what}/task{mem}")
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    mem = f", {med['memory']:.0f} B" if "memory" in med else ""
    print(
        f"median of {args.rounds} ({args.store}, {args.tasks:,} tasks, batches of {args.batch}): "
        f"claim {med['claim']:.1f}, result {med['result']:.1f}, "
        f"sum {med['claim'] + med['result']:.1f} {what}/task{mem}"
    )


if __name__ == "__main__":
    main()
