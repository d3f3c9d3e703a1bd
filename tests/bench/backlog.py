"""A preloaded backlog drained on embedded KVRocks, and what a single create costs meanwhile.

``python -m tests.bench.backlog [N]`` (default 200,000): a daemon on the KVRocks binary
(``../shared/kvrocks/kvrocks`` or ``$CODEQD_TEST_KVROCKS_BIN``), N tasks created into one
queue in batches of 500, then drained by batch claims and batch results of 500; a single
create is timed at each quarter of the drain, and a create and a claim after it. KVRocks
keeps a sorted set in RocksDB, where a read by rank from the start walks every entry
removed since the last compaction: the figures show whether the store's scripts do that
(docs/performance.md, "A drained backlog on KVRocks").
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import orjson
import trio

from tests.bench._http import Connection
from tests.bench._procs import Daemon, store_toml
from tests.bench.streams import preload
from tests.conftest import kvrocks_binary

BATCH = 500


async def main(n: int) -> None:
    binary = kvrocks_binary()
    if binary is None:
        print("no kvrocks binary (../shared/kvrocks/kvrocks, $CODEQD_TEST_KVROCKS_BIN)")
        return
    workdir = Path(tempfile.mkdtemp(prefix="codeqd-backlog-"))
    d = Daemon(workdir, "d", store_toml(binary, "everysec"))
    try:
        await d.wait_ready("/healthz")
        conn = await Connection.open("127.0.0.1", d.port)
        one = {"command": "backlog", "payload": {}}

        async def timed_create() -> float:
            t = time.perf_counter()
            status, body = await conn.request("POST", "/v1/codeq/tasks", one, d.producer)
            assert status == 202, body
            return (time.perf_counter() - t) * 1000

        t0 = time.perf_counter()
        await preload(d, "backlog", n, {})
        print(f"created {n:,} in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        rounds = n // BATCH
        for i in range(rounds):
            if i % max(1, rounds // 4) == 0:
                print(f"  {i * BATCH:>9,} drained: a create takes {await timed_create():.1f} ms")
            status, body = await conn.request(
                "POST",
                "/v1/codeq/tasks/claim/batch",
                {"commands": ["backlog"], "maxTasks": BATCH},
                d.worker,
            )
            tasks = orjson.loads(body)["tasks"] if status == 200 else []
            results = [{"id": t["id"], "status": "COMPLETED", "result": {}} for t in tasks]
            status, body = await conn.request(
                "POST", "/v1/codeq/tasks/batch/results", {"results": results}, d.worker
            )
            assert status == 200, body
        print(f"drained {n:,} in {time.perf_counter() - t0:.1f} s")
        print(f"after the drain: a create takes {await timed_create():.1f} ms", end="")
        t = time.perf_counter()
        status, _ = await conn.request(
            "POST", "/v1/codeq/tasks/claim", {"commands": ["backlog"]}, d.worker
        )
        print(f", a claim {(time.perf_counter() - t) * 1000:.1f} ms (status {status})")
        await conn.aclose()
    finally:
        d.stop()


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
