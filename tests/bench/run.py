"""``make bench``: throughput and latency of codeqd on this machine, in one run.

The load generator is this process (trio + a minimal keep-alive HTTP client,
see ``_http.py``); what it measures runs in child processes: a bare
hypercorn-trio endpoint (the framework ceiling) and the real daemon
(``python -m codeqd run``, embedded store, temp state dir). Scenarios:

  a   bare hypercorn-trio JSON endpoint, req/s (raw ASGI; and a minimal Quart-Trio app)
  b   codeqd create, req/s, with --conns connections (32) and with 8 (as many as c has
      producers: the ratio of c to a create is printed for both)
  c   single-task lifecycle (create -> claim -> result), tasks/s
  d   batch lifecycle with batches of 100, tasks/s
  e   claim latency p50/p99 with 1k and 1M pending tasks (HTTP and the store script alone);
      then the dashboard's overview, queue and task pages over those 1M (``ui.py``)
  f   1,000 idle long-poll claims: daemon CPU while they wait; wake-up latency p50/p99
  g   worker streams: 1,000 idle streams (daemon CPU while they wait, RSS with them open,
      push latency p50/p99: task created -> pushed to a waiting stream); a preloaded
      backlog drained by 4 stream worker processes, and batch producers while stream
      workers work; with the peers RQ and beanstalkd in the same
      shapes (single-task lifecycle 2 producers / 4 workers; drain with 4 worker
      processes), installed on first use (``--no-peers`` skips them); see ``streams.py``
  h   create with ``actors.ingress.processes`` = 1 and = 2
  k   b, c, d and g's streamed drain again on other stores: embedded KVRocks with
      rocksdb.write_options.sync yes (store.appendfsync = "always") and no, and
      redis-server with appendfsync always (b, c, d, g run on the default everysec)

Rates are given per wall-clock second and per CPU-second of the server process
(the daemon's Python process; the bare server): on a shared 2-core machine the
second figure is the stable one, since it does not count time other processes
took the core away. The table goes to stdout and, for a full run (no ``--only``),
to ``tests/bench/last-run.txt``: a local file, not kept in git, so a run's figures
are only yours until copied into docs/performance.md. Options: ``--quick`` (short
runs, 100k instead of 1M pending), ``--profile`` (py-spy samples the daemon during
b, c, d and g's idle-stream window; top frames are printed), ``--only b,c``. From make:
``make bench ARGS="--only c --profile"``, ``make bench ARGS="--only g,h"``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import trio

from tests.bench import streams
from tests.bench._http import Connection, build
from tests.bench._procs import (
    Daemon,
    cpu_seconds,
    metric,
    now,
    pct,
    rss_bytes,
    start_bare,
    store_toml,
)
from tests.bench.ui import ui_pages

PAYLOAD = {"data": "x" * 89}  # 100 bytes of JSON
assert len(orjson.dumps(PAYLOAD)) == 100
OUT = Path(__file__).parent / "last-run.txt"
SCENARIOS = "abcdefghk"


@dataclass
class Results:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        key: str,
        label: str,
        value: float,
        unit: str,
        fmt: str = "{:,.0f}",
        per_cpu: float | None = None,
        target: str | None = None,
    ) -> None:
        """A figure; ``per_cpu`` is the same rate per CPU-second the server process used
        (robust when other work shares the cores; see the module docstring); ``target``
        (e.g. ``"< 5"``, in ``unit``) is printed beside it, in the table too."""
        self.values[key] = value
        cpu = "" if per_cpu is None else fmt.format(per_cpu)
        if per_cpu is not None:
            self.values[f"{key}_cpu"] = per_cpu
        shown = unit if target is None else f"{unit}  (target {target})"
        self.rows.append((label, fmt.format(value), cpu, shown))
        print(
            f"  {label}: {fmt.format(value)} {shown}"
            + ("" if per_cpu is None else f" ({cpu} per server CPU-second)"),
            flush=True,
        )


class CpuMeter:
    """CPU seconds ``pids`` use between ``start`` and ``stop``, and the wall time."""

    def __init__(self, *pids: int | None) -> None:
        self.pids = [p for p in pids if p]

    def start(self) -> None:
        self.t0 = now()
        self.c0 = [cpu_seconds(p) for p in self.pids]

    def stop(self) -> tuple[float, list[float]]:
        wall = now() - self.t0
        return wall, [cpu_seconds(p) - c for p, c in zip(self.pids, self.c0, strict=True)]


async def closed_loop(
    port: int,
    conns: int,
    seconds: float,
    body: Callable[[Connection], Awaitable[int]],
    server_pid: int,
) -> tuple[float, float]:
    """``conns`` connections each running ``body`` back to back for ``seconds``;
    returns the units ``body`` reported per second, and per CPU-second of the server."""
    done = 0
    deadline = trio.current_time() + seconds

    async def one() -> None:
        nonlocal done
        conn = await Connection.open("127.0.0.1", port)
        try:
            while trio.current_time() < deadline:
                n = await body(conn)  # not `done += await ...`: that loses concurrent updates
                done += n
        finally:
            await conn.aclose()

    meter = CpuMeter(server_pid)
    meter.start()
    async with trio.open_nursery() as n:
        for _ in range(conns):
            n.start_soon(one)
    wall, (cpu,) = meter.stop()
    return done / wall, done / max(cpu, 1e-9)


# ---------------------------------------------------------------- scenarios


async def bare(res: Results, workdir: Path, secs: float, conns: int) -> None:
    for kind, key, label in (
        ("asgi", "a", "a  bare hypercorn-trio (raw ASGI)"),
        ("quart", "a_quart", "a' bare hypercorn-trio + Quart-Trio"),
    ):
        child = start_bare(workdir, kind)
        try:
            await child.wait_ready("/echo")
            req = build("POST", "/echo", {"command": "bench", "payload": PAYLOAD})

            async def post(conn: Connection, req: bytes = req) -> int:
                status, _ = await conn.send(req)
                assert status == 202, status
                return 1

            rate, per_cpu = await closed_loop(child.port, conns, secs, post, child.pid)
            res.add(key, label, rate, "req/s", per_cpu=per_cpu)
        finally:
            child.stop()


async def create_rate(
    res: Results,
    d: Daemon,
    secs: float,
    conns: int,
    key: str = "b",
    label: str = "b  codeqd create",
) -> None:
    req = build(
        "POST", "/v1/codeq/tasks", {"command": "bench.create", "payload": PAYLOAD}, d.producer
    )

    async def post(conn: Connection) -> int:
        status, body = await conn.send(req)
        assert status == 202, body
        return 1

    rate, per_cpu = await closed_loop(d.port, conns, secs, post, d.pid)
    res.add(key, label, rate, "req/s", per_cpu=per_cpu)


async def lifecycle(
    res: Results,
    d: Daemon,
    secs: float,
    batch: int,
    producers: int,
    workers: int,
    key: str,
    label: str,
) -> None:
    """Producers create (bounded backlog), workers claim and report; tasks/s completed."""
    cmd = f"bench.life{batch}"
    backlog = max(2000, batch * workers * 4)
    state = {"created": 0, "completed": 0}
    deadline = trio.current_time() + secs
    if batch == 1:
        create = build("POST", "/v1/codeq/tasks", {"command": cmd, "payload": PAYLOAD}, d.producer)
        claim = build(
            "POST", "/v1/codeq/tasks/claim", {"commands": [cmd], "waitSeconds": 1}, d.worker
        )
    else:
        create = build(
            "POST",
            "/v1/codeq/tasks/batch",
            {"tasks": [{"command": cmd, "payload": PAYLOAD}] * batch},
            d.producer,
        )
        claim = build(
            "POST",
            "/v1/codeq/tasks/claim/batch",
            {"commands": [cmd], "waitSeconds": 1, "maxTasks": batch},
            d.worker,
        )

    async def producer() -> None:
        conn = await Connection.open("127.0.0.1", d.port)
        while trio.current_time() < deadline:
            if state["created"] - state["completed"] >= backlog:
                await trio.sleep(0.005)  # backpressure: the generator's own pacing
                continue
            status, body = await conn.send(create)
            assert status == 202, body
            state["created"] += batch
        await conn.aclose()

    async def worker() -> None:
        conn = await Connection.open("127.0.0.1", d.port)
        while trio.current_time() < deadline:
            status, body = await conn.send(claim)
            if status == 204:
                continue
            assert status == 200, body
            if batch == 1:
                task = orjson.loads(body)
                status, body = await conn.request(
                    "POST",
                    f"/v1/codeq/tasks/{task['id']}/result",
                    {"status": "COMPLETED", "result": {"ok": True}},
                    d.worker,
                )
                assert status == 200, body
                state["completed"] += 1
            else:
                tasks = orjson.loads(body)["tasks"]
                if not tasks:
                    continue
                status, body = await conn.request(
                    "POST",
                    "/v1/codeq/tasks/batch/results",
                    {
                        "results": [
                            {"taskId": t["id"], "status": "COMPLETED", "result": {}} for t in tasks
                        ]
                    },
                    d.worker,
                )
                assert status == 200, body
                state["completed"] += len(tasks)
        await conn.aclose()

    meter = CpuMeter(d.pid, d.store_pid())
    meter.start()
    async with trio.open_nursery() as n:
        for _ in range(producers):
            n.start_soon(producer)
        for _ in range(workers):
            n.start_soon(worker)
    wall, cpu = meter.stop()
    res.add(
        key,
        label,
        state["completed"] / wall,
        "tasks/s",
        per_cpu=state["completed"] / max(cpu[0], 1e-9),
    )
    res.values[f"{key}_total"] = state["completed"]
    if len(cpu) > 1:
        res.notes.append(f"{key}: daemon {cpu[0] / wall:.0%} of a core, store {cpu[1] / wall:.0%}")


async def _parked(d: Daemon, n: int, timeout: float = 30) -> None:
    """Until the daemon counts ``n`` registered long-polls (its waiter gauge)."""
    conn = await Connection.open("127.0.0.1", d.port)
    parked = 0.0
    with trio.move_on_after(timeout):
        while True:
            parked = await metric(conn, "codeq_long_poll_waiters")
            if parked >= n:
                break
            await trio.sleep(0.05)  # polls: the gauge is the daemon's only sign of it
    await conn.aclose()
    if parked < n:
        raise RuntimeError(f"only {parked:g} of {n} long-polls registered within {timeout} s")


async def idle_long_polls(
    res: Results, d: Daemon, waiters: int, window: float, wakeups: int
) -> None:
    """Park ``waiters`` long-poll claims; sample the daemon's CPU while they wait; then
    create tasks one at a time and time create-sent -> claim-answered."""
    cmd = "bench.idle"
    claim = build("POST", "/v1/codeq/tasks/claim", {"commands": [cmd], "waitSeconds": 30}, d.worker)
    latencies: list[float] = []
    stop = trio.Event()
    all_woken = trio.Event()

    async def waiter(task_status: trio.TaskStatus[None]) -> None:
        conn = await Connection.open("127.0.0.1", d.port)
        await conn.stream.send_all(claim)
        task_status.started()
        while True:
            status, body = await conn.receive_response()
            if stop.is_set():
                break
            await conn.stream.send_all(claim)  # park again at once
            if status == 200:
                latencies.append(now() - orjson.loads(body)["payload"]["sent"])
                if len(latencies) >= wakeups:
                    all_woken.set()
        await conn.aclose()

    async with trio.open_nursery() as n:
        limiter = trio.CapacityLimiter(50)
        async with trio.open_nursery() as opening:
            for _ in range(waiters):

                async def open_one() -> None:
                    async with limiter:
                        await n.start(waiter)

                opening.start_soon(open_one)
        await _parked(d, waiters)
        cpu0, t0 = cpu_seconds(d.pid), now()
        await trio.sleep(window)  # the measurement window
        cpu = (cpu_seconds(d.pid) - cpu0) / (now() - t0) * 100
        res.add(
            "f_cpu",
            f"f  daemon CPU, {waiters} idle long-polls",
            cpu,
            "% of a core",
            "{:.1f}",
            target="< 5",
        )
        conn = await Connection.open("127.0.0.1", d.port)
        for _ in range(wakeups):
            status, _ = await conn.request(
                "POST", "/v1/codeq/tasks", {"command": cmd, "payload": {"sent": now()}}, d.producer
            )
            assert status == 202
            await trio.sleep(0.02)  # the pace of the wake-ups: one at a time
        with trio.move_on_after(5):  # a lost wake-up shows in the note (n/wakeups observed)
            await all_woken.wait()
        await conn.aclose()
        stop.set()
        n.cancel_scope.cancel()
    ms = [x * 1000 for x in latencies]
    res.add("f_p50", "f  wake-up latency p50", statistics.median(ms), "ms", "{:.1f}")
    res.add("f_p99", "f  wake-up latency p99", pct(ms, 99), "ms", "{:.1f}", target="< 50")
    res.notes.append(f"f: {len(ms)}/{wakeups} wake-ups observed, {waiters} parked claims")


async def claim_latency(res: Results, d: Daemon, pending: list[int], samples: int) -> None:
    """Fill the queue to each level with the store's batch script, then time claims:
    over HTTP (one connection, sequential) and the claim script alone."""
    from codeqd import config as cfgmod
    from codeqd.domain.task import parse_new_task
    from codeqd.store import connect
    from codeqd.store._batch import create_batch
    from codeqd.store._store import now_ms

    cfg = cfgmod.load(None, environ={})
    url = f"unix://{d.store_socket}"
    cmd = "bench.latency"
    async with connect(cfg, url) as store:
        mem0 = int((await store.client.info("memory"))["used_memory"])
        loaded = 0
        task = parse_new_task(
            {"command": cmd, "payload": PAYLOAD},
            now_ms=now_ms(),
            default_max_attempts=5,
            max_depth=64,
        )
        http = await Connection.open("127.0.0.1", d.port)
        claim = build("POST", "/v1/codeq/tasks/claim", {"commands": [cmd]}, d.worker)
        for level in pending:
            target = level + 2 * samples
            t0 = now()
            while loaded < target:
                chunk = min(1000, target - loaded)
                async with trio.open_nursery() as n:  # a few calls in flight
                    for _ in range(min(4, (target - loaded + chunk - 1) // chunk)):
                        n.start_soon(create_batch, store, "default", [task] * chunk)
                        loaded += chunk
            load_rate = (target - 0) / (now() - t0) if level == pending[-1] else 0
            await settle_aof(store)
            if level == pending[-1]:
                mem = int((await store.client.info("memory"))["used_memory"])
                res.add(
                    "mem_task",
                    "   store memory per pending task (100 B payload)",
                    (mem - mem0) / loaded,
                    "bytes",
                )
                res.notes.append(
                    f"e: loaded {loaded:,} tasks at {load_rate:,.0f} tasks/s "
                    "(create_batch.lua, 1000 per call, 4 in flight)"
                )
            http_ms: list[float] = []
            for _ in range(samples):
                t = now()
                status, body = await http.send(claim)
                http_ms.append((now() - t) * 1000)
                assert status == 200, body
            script_ms: list[float] = []
            for _ in range(samples):
                t = now()
                got = await store.claim("default", "bench-direct", [cmd], 300)
                script_ms.append((now() - t) * 1000)
                assert got
            loaded -= 2 * samples
            tag = f"{level // 1000}k" if level < 1_000_000 else f"{level // 1_000_000}M"
            res.add(
                f"e_http_p50_{tag}",
                f"e  claim p50 over HTTP, {tag} pending",
                statistics.median(http_ms),
                "ms",
                "{:.2f}",
            )
            res.add(
                f"e_http_p99_{tag}",
                f"e  claim p99 over HTTP, {tag} pending",
                pct(http_ms, 99),
                "ms",
                "{:.2f}",
            )
            res.add(
                f"e_lua_p50_{tag}",
                f"e  claim p50, script alone, {tag} pending",
                statistics.median(script_ms),
                "ms",
                "{:.3f}",
            )
            res.add(
                f"e_lua_p99_{tag}",
                f"e  claim p99, script alone, {tag} pending",
                pct(script_ms, 99),
                "ms",
                "{:.3f}",
            )
        await http.aclose()


async def settle_aof(store: Any) -> None:
    """Rewrite the AOF now and wait for it, so that no rewrite (a fork of a big store,
    competing for the 2 cores) starts while latency is measured."""
    with contextlib.suppress(Exception):  # "already in progress" is fine
        await store.client.bgrewriteaof()
    with trio.fail_after(300):
        while True:
            info = await store.client.info("persistence")
            if not int(info["aof_rewrite_in_progress"]) and not int(info["aof_rewrite_scheduled"]):
                return
            await trio.sleep(0.2)  # polls the store's rewrite state (bounded above)


# ---------------------------------------------------------------- profiling


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("  (py-spy not installed: pip install py-spy)")
        return None
    return subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(int(seconds)),
            "-r",
            "250",
            "-f",
            "raw",
            "--gil",  # only samples holding the GIL: CPU, not waits or preemption
            "-o",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize_profile(path: Path, top: int = 25) -> str:
    """Self and inclusive time per frame from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        count = int(n)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    lines = [f"{total} samples; self time:"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in own.most_common(top)]
    lines.append("inclusive time (codeqd, quart, hypercorn, coredis, structlog, jwt):")
    keep = (
        "codeqd",
        "quart",
        "hypercorn",
        "coredis",
        "structlog",
        "jwt",
        "orjson",
        "h11",
        "wsproto",
        "prometheus",
    )
    ranked = [(f, c) for f, c in incl.most_common() if any(k in f for k in keep)]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in ranked[:top]]
    return "\n".join(lines)


def report_profile(spy: subprocess.Popen[bytes] | None, workdir: Path, key: str) -> None:
    if spy is None:
        return
    spy.wait()
    raw = workdir / f"profile-{key}.txt"
    if raw.exists():
        summary = summarize_profile(raw)
        (Path(__file__).parent / f"profile-{key}.txt").write_text(summary)
        print(summary)


def profiler(pid: int, workdir: Path, key: str) -> Callable[[float], Callable[[], None]]:
    """For a scenario that starts its own measurement window: ``profiler(...)(seconds)``
    starts py-spy on ``pid`` and returns what waits for it and prints its summary."""

    def begin(seconds: float) -> Callable[[], None]:
        spy = start_profile(pid, seconds, workdir / f"profile-{key}.txt")
        return lambda: report_profile(spy, workdir, key)

    return begin


# ---------------------------------------------------------------- main


def table(res: Results, started: float) -> str:
    v = res.values
    out = [
        f"codeqd benchmark, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, loopback, "
        "1 ingress process, embedded redis-server",
        "",
    ]
    width = max(len(r[0]) for r in res.rows)
    out.append(f"{'':<{width}}  {'wall':>10}  {'per CPU-s':>10}")
    out += [
        f"{label:<{width}}  {value:>10}  {cpu:>10}  {unit}" for label, value, cpu, unit in res.rows
    ]
    out.append("")
    if "a" in v:
        for key, what in (
            ("b", "create / bare"),
            ("c", "single lifecycle tasks / bare req"),
            ("d", "batch lifecycle tasks / bare req"),
        ):
            if key in v:
                out.append(
                    f"ratio {key}/a  ({what}): wall {v[key] / v['a']:.2f}, "
                    f"per CPU-second {v[key + '_cpu'] / v['a_cpu']:.2f}"
                )
    if "c_cpu" in v:
        conns = f"{v.get('b_conns', 32):.0f}"
        for key, what in (("b", f"{conns} connections"), ("b8", "8 connections")):
            if key in v:
                out.append(
                    f"ratio c/{key}  (single lifecycle / create at {what}, daemon CPU per "
                    f"task): {v[key + '_cpu'] / v['c_cpu']:.2f}x"
                )
    if "e_http_p50_1k" in v:
        big = next((k for k in v if k.startswith("e_http_p50_") and not k.endswith("_1k")), None)
        if big:
            out.append(
                f"claim p50 ratio {big[11:]} / 1k pending: HTTP "
                f"{v[big] / v['e_http_p50_1k']:.2f}, script "
                f"{v['e_lua_p50_' + big[11:]] / v['e_lua_p50_1k']:.2f}"
            )
    out += streams.ratios(v)
    out += [f"note {n}" for n in res.notes]
    out.append(f"total bench time {time.monotonic() - started:.0f} s")
    return "\n".join(out) + "\n"


def _kvrocks() -> str | None:
    from tests.conftest import kvrocks_binary

    return kvrocks_binary()


async def other_stores(res: Results, workdir: Path, secs: float, conns: int, drain: int) -> None:
    """Scenario k: create, single and batch lifecycle, and a streamed drain, per store
    configuration."""
    binary = _kvrocks()
    setups = [("redis-server, appendfsync always", "kr", "redis-server", "always")]
    if binary is None:
        res.notes.append(
            "k: no kvrocks binary (../shared/kvrocks/kvrocks, $CODEQD_TEST_KVROCKS_BIN)"
        )
    else:
        setups += [
            ("KVRocks, sync yes", "ky", binary, "always"),
            ("KVRocks, sync no", "kn", binary, "everysec"),
        ]
    for what, key, server, fsync in setups:
        print(f"k: {what}", flush=True)
        d = Daemon(workdir, f"k-{key}", store_toml(server, fsync))
        try:
            await d.wait_ready("/healthz")
            res.rows.append((f"   -- {what}", "", "", ""))
            await create_rate(res, d, secs, conns, key=f"{key}b", label=f"{key} create")
            await lifecycle(res, d, secs * 2, 1, 8, 24, f"{key}c", f"{key} single lifecycle")
            await lifecycle(res, d, secs * 2, 100, 2, 4, f"{key}d", f"{key} batch lifecycle")
            await streams.streamed_drain(res, d, drain, f"{key}g", f"{key} streamed drain")
        finally:
            d.stop()


async def amain(args: argparse.Namespace) -> None:
    started = time.monotonic()
    res = Results()
    only = set(args.only.replace(",", "")) if args.only else set(SCENARIOS)  # "c,d" or "cd"
    secs = 3.0 if args.quick else args.seconds
    workdir = Path(tempfile.mkdtemp(prefix="codeqd-bench-"))
    try:
        if "a" in only:
            print("a: bare endpoint", flush=True)
            await bare(res, workdir, secs, args.conns)
        if only & set("bcdfg"):
            d = Daemon(workdir, "daemon", streams.daemon_config(max(args.waiters, args.streams)))
            try:
                await d.wait_ready("/healthz")
                if "b" in only:
                    print("b: create", flush=True)
                    spy = (
                        start_profile(d.pid, secs, workdir / "profile-b.txt")
                        if args.profile
                        else None
                    )
                    await create_rate(res, d, secs, args.conns)
                    res.values["b_conns"] = args.conns
                    report_profile(spy, workdir, "b")
                    # As many connections as c's producers: c's creates run at that
                    # concurrency, where a group commit holds fewer of them.
                    await create_rate(
                        res, d, secs, 8, key="b8", label="b  codeqd create, 8 connections"
                    )
                for key, batch, prod, work, label in (
                    ("c", 1, 8, 24, "c  single-task lifecycle"),
                    ("d", 100, 2, 4, "d  batch lifecycle (batches of 100)"),
                ):
                    if key not in only:
                        continue
                    print(f"{key}: lifecycle, batch {batch}", flush=True)
                    spy = (
                        start_profile(d.pid, secs * 2, workdir / f"profile-{key}.txt")
                        if args.profile
                        else None
                    )
                    await lifecycle(res, d, secs * 2, batch, prod, work, key, label)
                    report_profile(spy, workdir, key)
                total = int(res.values.get("c_total", 0) + res.values.get("d_total", 0))
                if total:
                    res.add(
                        "rss",
                        f"   daemon RSS after {total:,} lifecycles",
                        rss_bytes(d.pid) / 2**20,
                        "MiB",
                        "{:.0f}",
                    )
                if "f" in only:
                    print("f: idle long-polls", flush=True)
                    await idle_long_polls(res, d, args.waiters, 5 if args.quick else 10, 100)
                if "g" in only:
                    drain = 5000 if args.quick else 20000
                    admin = streams.admin_token(d)
                    print(f"g: {args.streams:,} idle worker streams", flush=True)
                    from codeqd import config as cfgmod

                    cfg = cfgmod.load(None, environ={}).streams
                    # A full run's window is ping_interval + ping_timeout (40 s): a stream
                    # that stays silent is pinged once per such period, so the window holds
                    # the steady-state ping/pong traffic (part of an idle stream's cost).
                    # A quick run's 5 s end before the first pings.
                    ping = float(cfg.ping_interval) + float(cfg.ping_timeout)
                    window = 5 if args.quick else max(10, ping)
                    await streams.idle_streams(
                        res,
                        d,
                        args.streams,
                        window,
                        100,
                        ping,
                        profile=profiler(d.pid, workdir, "g-idle") if args.profile else None,
                    )
                    print("g: worker streams", flush=True)
                    spy = (
                        start_profile(d.pid, secs * 2, workdir / "profile-g.txt")
                        if args.profile
                        else None
                    )
                    await streams.streamed_drain(res, d, drain)
                    report_profile(spy, workdir, "g")
                    await streams.streamed_lifecycle(res, d, admin, secs * 2)
                    print("g: HTTP single-task lifecycle, 2 producers / 4 workers", flush=True)
                    await lifecycle(
                        res, d, secs * 2, 1, 2, 4, "c24", "c' single-task lifecycle 2/4 (HTTP)"
                    )
            finally:
                d.stop()
        if "g" in only and not args.no_peers:
            drain = 5000 if args.quick else 20000
            print("g: peers", flush=True)
            await streams.rq_peer(res, workdir, secs * 2, drain)
            # c' again, after RQ: the ratio takes the mean of both (the VM drifts).
            print("g: HTTP single-task lifecycle 2/4, after RQ", flush=True)
            d = Daemon(workdir, "c24-after")
            try:
                await d.wait_ready("/healthz")
                await lifecycle(
                    res, d, secs * 2, 1, 2, 4, "c24_after", "c' single-task lifecycle 2/4, after RQ"
                )
            finally:
                d.stop()
            await streams.beanstalkd_peer(res, workdir, secs * 2, drain)
        if "h" in only:
            print("h: create by ingress processes", flush=True)
            await streams.create_by_processes(res, workdir, secs, args.conns, closed_loop)
        if "k" in only:
            await other_stores(res, workdir, secs, args.conns, 5000 if args.quick else 20000)
        if "e" in only:
            print("e: claim latency", flush=True)
            d = Daemon(workdir, "latency")
            try:
                await d.wait_ready("/healthz")
                levels = [1000, 100_000 if args.quick else 1_000_000]
                await claim_latency(res, d, levels, 500)
                label = "100k" if args.quick else "1M"
                await ui_pages(res, d, "bench.latency", label, 50)
            finally:
                d.stop()
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    text = table(res, started)
    print("\n" + text)
    if not args.only:
        OUT.write_text(text)
        print(f"written to {OUT} (a local file, ignored by git)")
    else:
        print(f"partial run (--only): {OUT} left as it was")


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, raw profiles)")
    p.add_argument("--only", default="", help="scenarios to run, e.g. 'c,d' or 'cd'")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--conns", type=int, default=32)
    p.add_argument("--waiters", type=int, default=1000, help="f: idle long-polls")
    p.add_argument("--streams", type=int, default=1000, help="g: idle worker streams")
    p.add_argument("--no-peers", action="store_true", help="g without RQ and beanstalkd")
    args = p.parse_args()
    if unknown := set(args.only.replace(",", "")) - set(SCENARIOS):
        p.error(f"--only: unknown scenario(s) {', '.join(sorted(unknown))}; pick from a-h, k")
    trio.run(amain, args)


if __name__ == "__main__":
    main()
