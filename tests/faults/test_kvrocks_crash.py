"""Crash consistency on KVRocks: a transition lands whole or not at all.

KVRocks runs a script under its global lock, but each ``redis.call`` inside is its
own RocksDB write: a ``kill -9`` mid-script can persist half of it (the first test
shows that it does). codeqd runs every script inside ``MULTI``/``EXEC`` on KVRocks,
where all of the script's writes go to one write batch, committed as one WAL record
(the second test kills it mid-script, repeatedly: all or nothing). The last test is
the accounting workload on an embedded KVRocks killed with ``kill -9`` three times
mid-load: nothing lost, nothing stranded, no overlapping leases, and the store's
indexes agree with the task records afterwards.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import orjson
import trio

from codeqd.store import Store, connect
from codeqd.store._keys import Keys
from tests.conftest import Daemon, KvrocksServer, merge, need_kvrocks
from tests.faults.conftest import assert_reconciled, fast, workload
from tests.integration.conftest import make_config

#: Writes one hash field per step, then a marker: the marker set means all N landed.
SCRIPT = (
    "for i = 1, tonumber(ARGV[1]) do redis.call('HSET', KEYS[1], i, i) end "
    "redis.call('SET', KEYS[2], '1') return 1"
)


def _resp(*args: str) -> bytes:
    return b"".join(
        [b"*%d\r\n" % len(args), *(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)]
    )


async def _kill_mid_script(server: KvrocksServer, request: bytes, after: float) -> tuple[int, int]:
    """Send ``request`` (not waiting for its answer), ``kill -9`` the server ``after``
    seconds later (the fault's timing: the script is still running then), restart it;
    (hash length, marker present)."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(request)
        await trio.sleep(after)  # the injection point, not a wait for a state
        server.stop(kill=True)
    await trio.to_thread.run_sync(server.start)
    return server.integer("HLEN", "h"), server.integer("EXISTS", "done")


async def test_a_plain_script_killed_midway_persists_half_of_it(tmp_path: Path) -> None:
    """Why the MULTI/EXEC wrapping exists (a KVRocks property, not codeqd's)."""
    server = KvrocksServer(tmp_path / "kv")
    server.workdir.mkdir()
    server.start()
    try:
        n = 300_000  # about 3 s of writes on this machine
        hlen, done = await _kill_mid_script(
            server, _resp("EVAL", SCRIPT, "2", "h", "done", str(n)), 0.5
        )
    finally:
        server.stop()
    assert 0 < hlen < n and done == 0, (hlen, done)


async def test_a_script_inside_multi_lands_whole_or_not_at_all(tmp_path: Path) -> None:
    server = KvrocksServer(tmp_path / "kv")
    server.workdir.mkdir()
    server.start()
    n = 3000  # about 1 s inside EXEC (the indexed batch costs more per write)
    request = _resp("MULTI") + _resp("EVAL", SCRIPT, "2", "h", "done", str(n)) + _resp("EXEC")
    try:
        for after in (0.05, 0.3, 0.6, 5.0):
            server.flush()
            hlen, done = await _kill_mid_script(server, request, after)
            assert (hlen, done) in ((0, 0), (n, 1)), (after, hlen, done)
            if after == 5.0:  # long after the script: it landed, whole
                assert (hlen, done) == (n, 1)
    finally:
        server.stop()


async def _audit(url: str, tmp_path: Path) -> list[str]:
    """Index entries that disagree with the task records (every task terminal now)."""
    config = make_config(tmp_path)
    problems: list[str] = []
    async with connect(config, url) as store:
        s: Store = store
        keys = Keys(config.store.prefix, config.store.shards)
        for k in keys.all():
            tasks = {f: orjson.loads(v) for f, v in (await s.client.hgetall(k.task)).items()}
            done = set(await s.client.zrange(k.done, 0, -1))
            for f, meta in tasks.items():
                ten, _, tid = f.partition("|")
                member = f"{ten}|{meta['command']}|{tid}"
                if meta["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):
                    problems.append(f"{tid} is {meta['status']}")
                if meta.get("deadLettered"):
                    if await s.client.zscore(k.dlq(ten, meta["command"]), tid) is None:
                        problems.append(f"{tid} dead-lettered but not in its DLQ")
                elif member not in done:
                    problems.append(f"{tid} {meta['status']} but not in the done index")
            for name in (k.delayed, k.leases, k.outbox):
                if left := await s.client.zrange(name, 0, -1):
                    problems.append(f"{name} still holds {left[:5]}")
            for ten_cmd in await s.client.smembers(k.queues):
                ten, _, cmd = ten_cmd.partition("|")
                if n := await s.client.zcard(k.ready(ten, cmd)):
                    problems.append(f"{ten_cmd}: {n} entries left in ready")
                if await s.client.zcard(k.avail(ten)):
                    problems.append(f"{ten}: claimable index not empty")
            counts = await s.client.hgetall(k.counts)
            problems += [f"count {c} = {v}" for c, v in counts.items() if int(v) != 0]
    return problems


def _store_pid(d: Daemon) -> int:
    return int((d.state_dir / "store" / "redis.pid").read_text())


async def test_kill_9_of_embedded_kvrocks_three_times_mid_load(
    daemon_factory: Any, tmp_path: Path
) -> None:
    binary = need_kvrocks()
    d: Daemon = daemon_factory(
        merge(fast({"store": {"appendfsync": "always"}}), {"store": {"server_bin": binary}})
    )
    wl = workload(d, tasks=150, workers=8, rate=60)
    kills = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wl.run, 120)
        for target in (30, 70, 110):  # creates acknowledged before each kill
            with trio.fail_after(60):
                await wl.wait_created(target)
            pid = _store_pid(d)
            os.kill(pid, signal.SIGKILL)
            kills += 1
            with trio.fail_after(20):
                while True:  # the store actor starts a new child
                    try:
                        if _store_pid(d) != pid:
                            break
                    except (OSError, ValueError):
                        pass
                    await trio.sleep(0.05)  # polls: a new child process has no event to await
    rec = await wl.reconcile()
    assert_reconciled(rec, wl)
    assert kills == 3 and d.log().count('"store.exited"') >= 3
    url = [line for line in d.log().splitlines() if '"store.started"' in line][-1]
    problems = await _audit(orjson.loads(url)["url"], tmp_path)
    assert problems == [], problems
