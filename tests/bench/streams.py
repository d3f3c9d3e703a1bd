"""Bench scenarios g (worker streams), h (ingress processes) and the peers (RQ,
beanstalkd), measured with the same shapes as ours:

  g   1,000 idle worker streams (each sent ``ready`` and waits): the daemon's CPU while
      they wait, its RSS with them open, and the push latency (task created over HTTP
      -> its ``task`` frame at a waiting stream) p50/p99; a preloaded backlog drained
      through worker streams by 4 worker processes; and 2 producers creating in
      batches of 100 while 4 stream worker processes work
  h   create, req/s, with ``actors.ingress.processes`` = 1 and = 2

and with g, the peers: single-task lifecycle with 2 producers / 4 workers, and the
drain of a preloaded backlog by 4 worker processes — RQ (pip ``rq``, SimpleWorker, on a
redis-server of its own) and beanstalkd (apt, with its binlog; pip ``greenstalk``) —
beside ours in the same shapes (HTTP lifecycle 2/4; streamed drain), as ratios.

Peers are installed here, on first use, never by ``make install``; a peer that cannot
be installed prints one line saying so and the rest goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import trio

from codeqd import config as cfgmod
from codeqd.auth import mint_dev_token
from codeqd.store import connect
from tests.bench._http import Connection, build
from tests.bench._procs import Daemon, cpu_seconds, metric, now, pct, rss_bytes
from tests.conftest import free_port

REPO = Path(__file__).parents[2]
PAYLOAD = {"data": "x" * 89}
WORKERS = 4


class Proc:
    """A child of ``tests.bench._children``: started, ``ready`` awaited, stopped with
    SIGTERM, its ``done N`` read."""

    def __init__(self, *args: str, wait_go: bool = False) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "BENCH_WAIT_GO": "1" if wait_go else ""}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench._children", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )

    async def ready(self, timeout: float = 30) -> None:
        assert self.proc.stdout is not None
        with trio.fail_after(timeout):
            line = await trio.to_thread.run_sync(self.proc.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"child did not start: {line!r}")

    def go(self) -> None:
        """Start a ``wait_go`` child's work (it is ``ready``: connected, waiting)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    async def finish(self, terminate: bool = True, timeout: float = 60) -> int:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if terminate and self.proc.poll() is None:
            self.proc.terminate()
        assert self.proc.stdout is not None
        with trio.fail_after(timeout):
            out = await trio.to_thread.run_sync(self.proc.stdout.read)
            await trio.to_thread.run_sync(self.proc.wait)
        for line in out.splitlines():
            if line.startswith("done "):
                return int(line.split()[1])
        return 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def _stats(conn: Connection, d: Daemon, admin: str, command: str) -> dict[str, Any]:
    status, body = await conn.request("GET", f"/v1/codeq/admin/queues/{command}", None, admin)
    assert status == 200, body
    return orjson.loads(body)  # type: ignore[no-any-return]


async def preload(d: Daemon, command: str, n: int, payload: Any = PAYLOAD) -> None:
    """``n`` tasks of ``command`` created in batches of 500 (a backlog to drain)."""
    conn = await Connection.open("127.0.0.1", d.port)
    batch = {"tasks": [{"command": command, "payload": payload}] * 500}
    for _ in range(n // 500):
        status, body = await conn.request("POST", "/v1/codeq/tasks/batch", batch, d.producer)
        assert status == 202, body
    await conn.aclose()


async def _until_empty(d: Daemon, command: str, timeout: float) -> None:
    """Until the queue has nothing ready or in progress, looked at every 20 ms in the
    store itself, with codeqd's own stats read (what the admin route answers): the
    observer costs the daemon nothing, as beanstalkd's drain has no observer at all.
    (Through the admin route each look cost the daemon ~1.9 ms of CPU: ~8 % of a core.)"""
    config = cfgmod._build(cfgmod.Config, {"state_dir": str(d.state_dir)}, "")
    async with connect(config, d.store_url) as store:
        await store.init_keyspace()  # reads the keyspace's shard count
        with trio.fail_after(timeout):
            while True:
                s = await store.queue_stats("default", command)  # the dev tokens' tenant
                if s.ready == 0 and s.in_progress == 0:
                    break
                await trio.sleep(0.02)  # a bench's observer: the queue's stats are the signal


def admin_token(d: Daemon) -> str:
    return mint_dev_token(d.secret, "admin", sub="bench-admin", ttl=86400)


def daemon_config(streams: int) -> str:
    """The bench daemon's ``[actors.ingress]`` tail and ``[streams]``: room for
    ``streams`` idle worker streams (and as many parked long-polls) at once, opened in a
    burst; streams do not count against ``max_waiters``, the f scenario's long-polls do."""
    room = max(10_000, 2 * streams)
    return (
        f"max_waiters = {room}\nbacklog = {max(4096, streams)}\n[streams]\nmax_streams = {room}\n"
    )


async def _claims_settled(d: Daemon, timeout: float = 60) -> None:
    """Until the daemon's claim script count stops moving (each stream that got its
    ``ready`` ack claims once, finds nothing, then waits on its wake-up)."""
    conn = await Connection.open("127.0.0.1", d.port)
    name = "codeq_store_call_duration_seconds_count"
    last, still = -1.0, 0
    with trio.fail_after(timeout):
        while still < 3:
            count = await metric(conn, name, script="claim")
            still = still + 1 if count == last else 0
            last = count
            await trio.sleep(0.1)  # polls: the metric is the daemon's only sign of it
    await conn.aclose()


async def idle_streams(
    res: Any,
    d: Daemon,
    streams: int,
    window: float,
    pushes: int,
    ping_period: float,
    profile: Callable[[float], Callable[[], None]] | None = None,
) -> None:
    """g: open ``streams`` worker streams from this process (``ready`` with
    ``maxInFlight`` 1, then waiting); sample the daemon's CPU while they wait and its
    RSS with them open; then create tasks one at a time over HTTP and time create-sent
    -> ``task`` frame received (each pushed task reported COMPLETED at once), the way
    scenario f times a long-poll wake-up. ``ping_period`` is how often the
    daemon pings a silent stream. ``profile(seconds)``, when given, starts
    sampling the daemon for the CPU window and returns what reports it afterwards."""
    from codeqd_client._ws import Closed, WebSocket

    command = "bench.gidle"
    url = f"http://127.0.0.1:{d.port}/v1/codeq/workers/stream"
    headers = {"Authorization": f"Bearer {d.worker}"}
    ready = orjson.dumps(
        {"type": "ready", "commands": [command], "maxInFlight": 1, "frames": True}
    ).decode()  # "frames": as the worker runner asks (a frame may hold several messages)
    latencies: list[float] = []
    all_pushed = trio.Event()
    closed: list[int] = []
    rss0 = rss_bytes(d.pid)

    async def stream(task_status: trio.TaskStatus[None]) -> None:
        ws = await WebSocket.connect(url, headers)
        try:
            await ws.send(ready)
            ack = orjson.loads(await ws.receive())
            assert ack["type"] == "ack", ack
            task_status.started()
            while True:
                frame = orjson.loads(await ws.receive())
                for msg in frame if isinstance(frame, list) else [frame]:
                    if msg["type"] == "task":
                        task = msg["task"]
                        latencies.append(now() - task["payload"]["sent"])
                        if len(latencies) >= pushes:
                            all_pushed.set()
                        await ws.send(
                            orjson.dumps(
                                {
                                    "type": "result",
                                    "id": task["id"],
                                    "leaseId": task["leaseId"],
                                    "status": "COMPLETED",
                                    "result": {},
                                }
                            ).decode()
                        )
                    elif msg["type"] == "ping":
                        await ws.send('{"type":"pong"}')
        except Closed as e:
            closed.append(e.code)  # by the daemon: shows in the note
        finally:
            await ws.close()

    async with trio.open_nursery() as n:
        limiter = trio.CapacityLimiter(50)
        t_open = now()
        async with trio.open_nursery() as opening:
            for _ in range(streams):

                async def open_one() -> None:
                    async with limiter:
                        await n.start(stream)

                opening.start_soon(open_one)
        t_open = now() - t_open
        await _claims_settled(d)
        conn = await Connection.open("127.0.0.1", d.port)
        opened = await metric(conn, "codeq_worker_streams_open")
        assert opened >= streams, f"the daemon counts {opened:g} open streams of {streams}"
        gen0, cpu0, t0 = cpu_seconds(os.getpid()), cpu_seconds(d.pid), now()
        report = profile(window) if profile else None
        await trio.sleep(window)  # the measurement window
        wall = now() - t0
        cpu = (cpu_seconds(d.pid) - cpu0) / wall * 100
        gen = (cpu_seconds(os.getpid()) - gen0) / wall * 100
        if report:
            report()
        rss = rss_bytes(d.pid)
        res.add(
            "g_idle_cpu",
            f"g  daemon CPU, {streams} idle worker streams",
            cpu,
            "% of a core",
            "{:.1f}",
            target="< 5",
        )
        res.add(
            "g_idle_rss",
            f"g  daemon RSS with {streams} open worker streams",
            rss / 2**20,
            "MiB",
            "{:.0f}",
            target="< 250",
        )
        created: list[float] = []  # create sent -> 202 received: the HTTP part alone
        for _ in range(pushes):
            sent = now()
            status, _ = await conn.request(
                "POST",
                "/v1/codeq/tasks",
                {"command": command, "payload": {"sent": sent}},
                d.producer,
            )
            created.append((now() - sent) * 1000)
            assert status == 202
            await trio.sleep(0.02)  # the pace of the pushes: one at a time, as in f
        with trio.move_on_after(5):  # a lost push shows in the note (n/pushes observed)
            await all_pushed.wait()
        await conn.aclose()
        n.cancel_scope.cancel()
    ms = [x * 1000 for x in latencies]
    res.add("g_push_p50", "g  push latency p50", statistics.median(ms), "ms", "{:.1f}")
    res.add("g_push_p99", "g  push latency p99", pct(ms, 99), "ms", "{:.1f}", target="< 20")
    pings = (
        "holds the steady-state pings and pongs"
        if window >= ping_period
        else "shorter than the ping period: few or no pings"
    )
    res.notes.append(
        f"g_idle: {streams} streams opened in {t_open:.1f} s; CPU window {window:.0f} s "
        f"({pings}; a silent stream is pinged every {ping_period:g} s), load generator "
        f"{gen:.1f} % of a core; daemon RSS {rss0 / 2**20:.0f} MiB before opening, "
        f"{(rss - rss0) / streams / 1024:.0f} KiB per stream; "
        f"{len(ms)}/{pushes} pushes observed; the create's own round trip p50 "
        f"{statistics.median(created):.1f} ms, p99 {pct(created, 99):.1f} ms"
        + (
            f"; {len(closed)} streams closed by the daemon (codes {sorted(set(closed))})"
            if closed
            else ""
        )
    )


def _stream_workers(
    d: Daemon, command: str, max_in_flight: int = 64, *, wait_go: bool = False
) -> list[Proc]:
    return [
        Proc(
            "stream",
            f"http://127.0.0.1:{d.port}",
            d.worker,
            command,
            str(max_in_flight),
            wait_go=wait_go,
        )
        for _ in range(WORKERS)
    ]


async def _started(workers: list[Proc]) -> float:
    """Wait until every drain worker is connected, then start them all: the clock of a
    drain (ours and the peers') runs from here, not from the interpreters' start-up."""
    for w in workers:
        await w.ready()
    for w in workers:
        w.go()
    return time.perf_counter()


async def streamed_drain(
    res: Any, d: Daemon, n: int, key: str = "g_drain", label: str = "g  streamed drain"
) -> None:
    """g (and k, on other stores): ``n`` tasks preloaded, then drained by 4 stream
    worker processes."""
    command = "bench.gdrain"
    await preload(d, command, n)
    workers = _stream_workers(d, command, wait_go=True)
    store_pid = d.store_pid()
    try:
        cpu0 = cpu_seconds(d.pid)
        store0 = cpu_seconds(store_pid) if store_pid else 0.0
        meter_t0 = await _started(workers)
        await _until_empty(d, command, 600)
        wall = time.perf_counter() - meter_t0
        cpu = cpu_seconds(d.pid) - cpu0
        store_cpu = cpu_seconds(store_pid) - store0 if store_pid else 0.0
    finally:
        done = [await w.finish() for w in workers]
    res.add(
        key,
        f"{label} of {n:,} (4 worker processes)",
        n / wall,
        "tasks/s",
        per_cpu=n / max(cpu, 1e-9),
    )
    res.notes.append(
        f"{key}: per worker {done}; CPU per task: daemon {cpu / n * 1e6:.0f} us, "
        f"store {store_cpu / n * 1e6:.0f} us"
    )


async def streamed_lifecycle(res: Any, d: Daemon, admin: str, secs: float) -> None:
    """g: 2 producers creating in batches of 100 while 4 stream worker processes work."""
    command = "bench.glife"
    workers = _stream_workers(d, command)
    for w in workers:
        await w.ready()
    state = {"created": 0}
    deadline = trio.current_time() + secs
    batch = {"tasks": [{"command": command, "payload": PAYLOAD}] * 100}
    backlog = 4000

    async def producer() -> None:
        conn = await Connection.open("127.0.0.1", d.port)
        probe = await Connection.open("127.0.0.1", d.port)
        while trio.current_time() < deadline:
            s = await _stats(probe, d, admin, command)
            if s["ready"] >= backlog:
                await trio.sleep(0.005)  # backpressure: the generator's own pacing
                continue
            status, body = await conn.request("POST", "/v1/codeq/tasks/batch", batch, d.producer)
            assert status == 202, body
            state["created"] += 100
        await conn.aclose()
        await probe.aclose()

    t0, cpu0 = time.perf_counter(), cpu_seconds(d.pid)
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(producer)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(d.pid) - cpu0
    done = sum([await w.finish() for w in workers])
    res.add(
        "g_life",
        "g' batch producers (2) + stream workers (4 processes)",
        done / wall,
        "tasks/s",
        per_cpu=done / max(cpu, 1e-9),
    )


async def create_by_processes(
    res: Any, workdir: Path, secs: float, conns: int, closed_loop: Any
) -> None:
    """h: create, req/s, with 1 and 2 ingress processes (wall rate: several processes).

    The load comes from wrk (apt) when it can be had: a C generator that leaves the
    second core to the second process, as in the issue's own figure (wrk, 32
    connections). Without it, from this process, which then shares the two cores with
    both ingress processes (the figure says which)."""
    why = _apt_install("wrk", "wrk")
    if why:
        print(f"  wrk: not installed ({why}); h uses the Python generator", flush=True)
    # 1, 2, 2, 1: the VM's speed drifts within minutes, and each side's mean over this
    # order cancels a steady drift; both samples of each side are printed.
    samples: dict[int, list[float]] = {1: [], 2: []}
    for n, procs in enumerate((1, 2, 2, 1)):
        d = Daemon(workdir, f"procs{procs}-{n}", processes=procs)
        try:
            await d.wait_ready("/healthz")
            body = {"command": "bench.h", "payload": PAYLOAD}
            if not why:
                samples[procs].append(
                    await _wrk_post(workdir, d, "/v1/codeq/tasks", body, conns, secs)
                )
                continue
            req = build("POST", "/v1/codeq/tasks", body, d.producer)

            async def post(conn: Connection, req: bytes = req) -> int:
                status, body = await conn.send(req)
                assert status == 202, body
                return 1

            rate, _ = await closed_loop(d.port, conns, secs, post, d.pid)
            samples[procs].append(rate)
        finally:
            d.stop()
    load = "" if why else f" (wrk, {conns} connections)"
    for procs, rates in samples.items():
        label = f"h  create, ingress processes = {procs}{load}, mean of 2"
        res.add(f"h{procs}", label, sum(rates) / len(rates), "req/s")
    res.notes.append(
        "h: order 1, 2, 2, 1; req/s "
        + ", ".join(
            f"{p} process{'es' if p > 1 else ''}: {a:,.0f} and {b:,.0f}"
            for p, (a, b) in samples.items()
        )
    )


async def _wrk_post(
    workdir: Path, d: Daemon, path: str, body: Any, conns: int, secs: float
) -> float:
    """Requests/s of wrk (one thread) POSTing ``body``; every answer must be a 2xx."""
    script = workdir / "wrk-post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(orjson.dumps(body).decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {d.producer}"\n'
    )
    out = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(secs))}s", "-s", str(script),
             f"http://127.0.0.1:{d.port}{path}"],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert "Non-2xx" not in out, out
    return float(next(ln for ln in out.splitlines() if ln.startswith("Requests/sec")).split()[1])


# ---------------------------------------------------------------- peers


def _pip_install(*packages: str) -> str | None:
    """Install into this interpreter; None when done, else why not."""
    missing = []
    for pkg in packages:
        mod = {"rq": "rq", "greenstalk": "greenstalk"}[pkg]
        try:
            __import__(mod)
        except ImportError:
            missing.append(pkg)
    if not missing:
        return None
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", *missing],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        return (r.stderr.strip().splitlines() or ["pip failed"])[-1]
    return None


def _apt_install(binary: str, package: str) -> str | None:
    if shutil.which(binary):
        return None
    r = subprocess.run(["apt-get", "install", "-y", "-q", package], capture_output=True, text=True)
    if r.returncode != 0 or not shutil.which(binary):
        return (r.stderr.strip().splitlines() or ["apt-get failed"])[-1]
    return None


async def _peer_lifecycle(
    workers: list[Proc], producers: list[Proc], secs: float, count: Any
) -> float:
    for p in [*workers, *producers]:
        await p.ready()
    await trio.sleep(0.5)  # let the producers build a backlog first
    before, t0 = count(), time.perf_counter()
    await trio.sleep(secs)  # the measured window: a fixed stretch of wall time
    after, wall = count(), time.perf_counter() - t0
    for p in producers:
        await p.finish()
    for w in workers:
        await w.finish()
    return float((after - before) / wall)


async def rq_peer(res: Any, workdir: Path, secs: float, n: int) -> None:
    why = _pip_install("rq")
    if why:
        print(f"  peer RQ: not measured (pip install rq failed: {why})", flush=True)
        return
    from redis import Redis
    from rq import Queue

    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        cwd=workdir,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        conn = Redis.from_url(url)
        with trio.fail_after(10):
            while True:
                try:
                    conn.ping()
                    break
                except Exception:
                    await trio.sleep(0.05)  # until redis-server answers
        q = Queue("bench", connection=conn)
        # lifecycle: 2 producers / 4 workers
        workers = [Proc("rq-worker", url, "bench", "0") for _ in range(WORKERS)]
        producers = [Proc("rq-producer", url, "bench", "2000") for _ in range(2)]
        try:
            from rq import Worker

            def finished() -> int:
                return sum(w.successful_job_count for w in Worker.all(queue=q))

            rate = await _peer_lifecycle(workers, producers, secs, finished)
        finally:
            for p in [*workers, *producers]:
                p.kill()
        res.add("rq_life", "   RQ single-task lifecycle (2 producers / 4 workers)", rate, "tasks/s")
        conn.flushall()
        # drain: n preloaded, 4 burst workers
        from tests.bench._children import bench_job

        with conn.pipeline() as pipe:
            for _ in range(n):
                q.enqueue(bench_job, "x", pipeline=pipe)
            pipe.execute()
        workers = [Proc("rq-worker", url, "bench", "1", wait_go=True) for _ in range(WORKERS)]
        t0 = await _started(workers)
        for w in workers:
            await w.finish(terminate=False, timeout=600)
        wall = time.perf_counter() - t0
        res.add("rq_drain", f"   RQ drain of {n:,} (4 worker processes)", n / wall, "tasks/s")
    finally:
        server.terminate()
        server.wait()


async def beanstalkd_peer(res: Any, workdir: Path, secs: float, n: int) -> None:
    why = _apt_install("beanstalkd", "beanstalkd") or _pip_install("greenstalk")
    if why:
        print(f"  peer beanstalkd: not measured (install failed: {why})", flush=True)
        return
    import greenstalk

    port = free_port()
    binlog = workdir / "beanstalkd-binlog"
    binlog.mkdir(exist_ok=True)
    server = subprocess.Popen(
        ["beanstalkd", "-l", "127.0.0.1", "-p", str(port), "-b", str(binlog)],
        stdout=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(10):
            while True:
                try:
                    client = greenstalk.Client(("127.0.0.1", port))
                    break
                except OSError:
                    await trio.sleep(0.05)  # until beanstalkd listens
        workers = [Proc("bs-worker", str(port), "life", "0") for _ in range(WORKERS)]
        producers = [Proc("bs-producer", str(port), "life", "2000") for _ in range(2)]

        def deleted() -> int:
            return int(client.stats()["cmd-delete"])

        try:
            rate = await _peer_lifecycle(workers, producers, secs, deleted)
        finally:
            for p in [*workers, *producers]:
                p.kill()
        res.add(
            "bs_life",
            "   beanstalkd single-task lifecycle (2 producers / 4 workers)",
            rate,
            "tasks/s",
        )
        client.use("drain")
        for _ in range(n):
            client.put('{"data":"' + "x" * 89 + '"}')
        workers = [Proc("bs-worker", str(port), "drain", "1", wait_go=True) for _ in range(WORKERS)]
        t0 = await _started(workers)
        done = [await w.finish(terminate=False, timeout=600) for w in workers]
        wall = time.perf_counter() - t0
        assert sum(done) == n, done
        res.add(
            "bs_drain", f"   beanstalkd drain of {n:,} (4 worker processes)", n / wall, "tasks/s"
        )
        client.close()
    finally:
        server.terminate()
        server.wait()


def ratios(v: dict[str, float]) -> list[str]:
    out = []
    if "c24_after" in v and "c24" in v:  # c' measured before and after RQ: their mean
        v = {**v, "c24": (v["c24"] + v["c24_after"]) / 2}
        out.append("(c24 below: the mean of c' before and after the RQ peer)")
    for ours, peer, what in (
        ("c24", "rq_life", "HTTP single-task lifecycle 2/4 vs RQ"),
        ("c24", "bs_life", "HTTP single-task lifecycle 2/4 vs beanstalkd"),
        ("g_drain", "rq_drain", "streamed drain vs RQ drain"),
        ("g_drain", "bs_drain", "streamed drain vs beanstalkd drain"),
        ("h2", "h1", "create, 2 ingress processes vs 1"),
    ):
        if ours in v and peer in v and v[peer]:
            out.append(f"ratio {ours}/{peer}  ({what}): {v[ours] / v[peer]:.2f}")
    return out
