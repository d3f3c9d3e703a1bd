"""kill -9 of codeqd, and SIGTERM, while the accounting workload runs."""

from __future__ import annotations

import signal
from typing import Any

import trio

from tests.conftest import Daemon
from tests.faults.conftest import assert_reconciled, fast, workload
from tests.faults.workload import wall_ms


async def test_kill_9_mid_workload_loses_and_strands_nothing(daemon_factory: Any) -> None:
    """Two kill -9s of the daemon (its embedded store follows it) at different points;
    workers and producers retry across the restarts. Extends the e2e kill -9 test,
    which crashes an idle daemon, to a crash under load with the full accounting."""
    d: Daemon = daemon_factory(fast({"store": {"appendfsync": "always"}}))
    wl = workload(d, tasks=100, workers=8, rate=60)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wl.run, 90)
        for at in (20, 60):
            with trio.fail_after(60):
                await wl.wait_terminal(at)
            d.stop(kill=True)
            await trio.to_thread.run_sync(d.start)
    rec = await wl.reconcile()
    assert_reconciled(rec, wl)
    assert wl.transport_errors, "the crash went unnoticed: the test did not test anything"


async def test_kill_9_with_stream_workers_loses_and_strands_nothing(daemon_factory: Any) -> None:
    """The same accounting with the workers on worker streams (SPEC §6): several streams
    with maxInFlight 3, tasks pushed, heartbeats, results, nacks and abandons sent as
    messages, over two store shards. Two kill -9s while they stream; each worker reopens
    its stream on the restarted daemon and sends again what the dead one left
    unanswered. A result acked 200 stays, every acknowledged create ends done or dead,
    no two live leases overlap. (tests/e2e/test_worker_streams.py runs the worker
    runner itself through a kill -9 with two ingress processes, without the accounting;
    two processes here double this test's time.)"""
    d: Daemon = daemon_factory(fast({"store": {"appendfsync": "always", "shards": 2}}))
    wl = workload(d, tasks=100, workers=4, rate=60, transport="stream", max_in_flight=3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wl.run, 90)
        for at in (20, 60):
            with trio.fail_after(60):
                await wl.wait_terminal(at)
            d.stop(kill=True)
            pushed_before_restart = wl.statuses[("push", 200)]
            await trio.to_thread.run_sync(d.start)
    rec = await wl.reconcile()
    assert_reconciled(rec, wl)
    statuses = dict(wl.statuses)
    print(sorted(statuses.items()), dict(wl.transport_errors))
    assert wl.transport_errors["stream Unreachable"] >= 2, "no stream saw the crashes"
    # Every worker reopened its stream after each crash, and tasks came on the new ones.
    assert statuses[("stream", 101)] >= 3 * wl.s.workers, statuses
    assert statuses[("push", 200)] > pushed_before_restart, statuses
    assert statuses.get(("stream nack", 200), 0) > 0, "no nack: no retry was tested"
    assert not any(e == "claim" for e, _ in statuses), "a stream worker claimed over HTTP"


async def test_sigterm_under_load_drains_cleanly(daemon_factory: Any) -> None:
    """SIGTERM mid-workload: exit 0 within the grace, no 5xx but 503, every request in
    flight at the signal gets an HTTP answer; after a restart nothing is stranded."""
    d: Daemon = daemon_factory(fast({"shutdown": {"grace_seconds": 3}}))
    wl = workload(d, tasks=100, workers=8, rate=60)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wl.run, 90)
        with trio.fail_after(60):
            await wl.wait_terminal(30)
        proc = d.proc
        assert proc is not None
        # Signal while a request is in flight (workers may all be busy "working" at once).
        while wl.in_flight == 0:
            await wl.wait_for(lambda: wl.in_flight > 0)
        signalled = wall_ms()
        d.signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(proc.wait, 20)
        stopped = wall_ms()
        assert code == 0, d.log()[-2000:]
        log = d.log()
        await trio.to_thread.run_sync(d.start)
    rec = await wl.reconcile()
    assert_reconciled(rec, wl)
    # The HTTP drain ends within the grace (hypercorn's graceful_timeout), and the
    # supervisor's backstop is grace + 1 s; typically the whole stop takes ~0.5-0.7 s
    # (one run in about twenty took the grace, under the full suite's load).
    assert stopped - signalled < 5_000, (
        f"shutdown took {stopped - signalled} ms: more than the grace + backstop",
        log[-4000:],
    )
    in_flight = [t for t in wl.timeline if t[1] <= signalled <= t[2]]
    assert in_flight, "nothing was in flight at the signal: the test tested nothing"
    # Every request the daemon read was answered. A request sent on a kept-alive
    # connection just as the shutdown closed it as idle is never read: the client gets a
    # connection error and retries it safely (HTTP/1.1's keep-alive race).
    answered = [t for t in in_flight if t[3].isdigit()]
    assert all(f'"request_id":"{t[4]}"' in log for t in answered), "the log check is blind"
    cut = [t for t in in_flight if not t[3].isdigit()]
    read = [t for t in cut if f'"request_id":"{t[4]}"' in log]
    assert read == [], f"requests read at SIGTERM got no HTTP answer: {read}"
    print(
        f"in flight at SIGTERM: {len(in_flight)}, answered with "
        f"{sorted({t[3] for t in in_flight})} ({len(cut)} never read); "
        f"stopped in {stopped - signalled} ms"
    )
