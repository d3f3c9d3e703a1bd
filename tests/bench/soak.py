"""``make soak``: the accounting workload at a steady rate for a long time, then reconciled.

Starts a real daemon (``python -m codeqd run``, embedded store, temp state
dir), runs ``tests.faults.workload`` against it at ``--rate`` creates per
second for ``--minutes`` (default 10), and reports throughput, p50/p99 per
endpoint, daemon RSS and store memory (``INFO memory``) sampled from start to
end, and the reconciliation (lost / stranded / violations must all be 0).
Exit status 1 when the reconciliation fails, or when the daemon's RSS grew by more
than ``--max-rss-growth`` percent (default 10) over the second half of the run: by
then the working set is warm, so steady growth there is a leak, not warm-up.

    python -m tests.bench.soak --minutes 2 --rate 20
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from codeqd.auth import mint_dev_token
from tests.bench._procs import Daemon, rss_bytes
from tests.faults.workload import Settings, Workload

CONFIG = """
[actors.reaper]
interval = "250ms"
[actors.promoter]
interval = "250ms"
[backoff]
policy = "fixed"
base = 0
max = 5
[store]
appendfsync = "everysec"
"""


def store_memory(d: Daemon) -> dict[str, int]:
    out = subprocess.run(
        ["redis-cli", "-s", str(d.store_socket), "info", "memory"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k: int(fields[k]) for k in ("used_memory", "used_memory_rss") if k in fields}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def soak(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="codeqd-soak-"))
    d = Daemon(work, "soak", CONFIG)
    try:
        await d.wait_ready("/readyz")
        seconds = args.minutes * 60
        settings = Settings(
            tasks=max(1, int(args.rate * seconds)),
            workers=args.workers,
            rate=args.rate,
            lease_seconds=args.lease,
            seed=args.seed,
            max_attempts=3,
            work_seconds=0.05,
        )
        wl = Workload(
            f"http://127.0.0.1:{d.port}",
            lambda role, sub: mint_dev_token(
                d.secret,
                role,  # type: ignore[arg-type]
                sub=sub,
                ttl=86400,
            ),
            settings,
        )
        samples: list[tuple[float, int, dict[str, int]]] = []

        async def sample() -> None:
            every = max(5.0, seconds / 20)
            while True:
                pid = d.store_pid()
                samples.append(
                    (time.monotonic() - started, rss_bytes(d.pid), store_memory(d) if pid else {})
                )
                await trio.sleep(every)  # the sampling cadence

        print(
            f"soak: {settings.tasks} tasks at {args.rate}/s for {args.minutes} min, "
            f"{args.workers} workers, lease {args.lease}s; daemon log {d.log}",
            flush=True,
        )
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            await wl.run(timeout=seconds + 300)
            nursery.cancel_scope.cancel()
        elapsed = time.monotonic() - started
        samples.append((elapsed, rss_bytes(d.pid), store_memory(d)))
        rec = await wl.reconcile()
    finally:
        d.stop()
    creates = [t for t in wl.timeline if t[0] == "create"]
    produced = (max(t[2] for t in creates) - min(t[1] for t in creates)) / 1000
    requests = sum(len(v) for k, v in wl.latencies.items() if k not in ("get", "dlq"))
    print(
        f"\nrun {elapsed:.0f} s (production {produced:.0f} s, then drain); {rec.created} "
        f"tasks created ({rec.created / produced:.1f}/s while producing), "
        f"{rec.completed + rec.failed + rec.dead_lettered} finished; {requests} workload "
        f"HTTP requests ({requests / elapsed:.0f}/s)"
    )
    print(f"{'endpoint':<10} {'count':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for endpoint, values in sorted(wl.latencies.items()):
        ms = [v * 1000 for v in values]
        print(
            f"{endpoint:<10} {len(ms):>8} {statistics.median(ms):>8.1f} "
            f"{pct(ms, 0.99):>8.1f} {max(ms):>8.1f}"
        )
    print(
        "(claim includes 1 s long-polls that end 204 when the queue is empty; get/dlq "
        "are the reconciliation's reads)"
    )
    statuses = sorted((f"{e}:{s}", n) for (e, s), n in wl.statuses.items())
    print("statuses:", ", ".join(f"{k}={n}" for k, n in statuses))
    print(f"{'t s':>6} {'daemon RSS MB':>14} {'store used MB':>14} {'store RSS MB':>13}")
    for t, rss, mem in samples:
        print(
            f"{t:>6.0f} {rss / 2**20:>14.1f} {mem.get('used_memory', 0) / 2**20:>14.1f} "
            f"{mem.get('used_memory_rss', 0) / 2**20:>13.1f}"
        )
    half = [rss for t, rss, _ in samples if t >= elapsed / 2]
    growth = (half[-1] - half[0]) / half[0] * 100 if len(half) > 1 else 0.0
    print(
        f"daemon RSS over the second half: {growth:+.1f}% "
        f"(bound {args.max_rss_growth:.1f}%; store memory grows with retained terminal "
        f"tasks: retention 24 h)"
    )
    print("reconciliation:", rec.summary())
    for v in (rec.lost + rec.stranded + rec.violations)[:20]:
        print("  ", v)
    failures = [] if rec.ok else ["the reconciliation failed"]
    if len(half) < 2:
        failures.append("too few RSS samples in the second half to judge growth")
    elif growth > args.max_rss_growth:
        failures.append(
            f"daemon RSS grew {growth:.1f}% over the second half "
            f"({half[0] / 2**20:.1f} -> {half[-1] / 2**20:.1f} MB), "
            f"above --max-rss-growth {args.max_rss_growth:g}%"
        )
    print("RESULT:", "OK" if not failures else "FAILED: " + "; ".join(failures))
    return 0 if not failures else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="task creates per second")
    parser.add_argument(
        "--workers",
        type=int,
        default=24,
        help="8 fall behind 20 creates/s: 10%% of tasks outlive a lease",
    )
    parser.add_argument("--lease", type=int, default=3, help="lease seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--max-rss-growth",
        type=float,
        default=10.0,
        metavar="PCT",
        help="fail (exit 1) when daemon RSS grows more than this %% over the second half",
    )
    sys.exit(trio.run(soak, parser.parse_args()))


if __name__ == "__main__":
    main()
