"""The store breaking under the accounting workload: killed, gone for 10 s, slow."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.conftest import Daemon, RedisServer
from tests.faults.conftest import assert_reconciled, fast, workload
from tests.faults.proxy import run_proxy
from tests.faults.workload import Workload, wall_ms

COMMAND_TIMEOUT = 2.0
#: Every request must be answered (503 or not) within this: the worker paths make at
#: most two store calls (nack/abandon: look-up + script), each bounded by
#: store.command_timeout, plus a long-poll claim's 1 s wait, plus 1.5 s of margin.
BOUND_MS = (2 * COMMAND_TIMEOUT + 1 + 1.5) * 1000


def _store_pid(d: Daemon) -> int:
    return int((d.state_dir / "store" / "redis.pid").read_text())


def _attempts_between(wl: Workload, start: int, end: int) -> list[tuple[str, int, int, str]]:
    """HTTP attempts (endpoint, started, ended, outcome) that started in [start, end)."""
    return [t for t in wl.timeline if start <= t[1] < end]


def _first_success_after(wl: Workload, since: int) -> int | None:
    ok = [t[2] for t in wl.timeline if t[1] >= since and t[3].startswith("2")]
    return min(ok) if ok else None


def _external(url: str) -> dict[str, Any]:
    return fast(
        {
            "store": {
                "mode": "external",
                "url": url,
                "command_timeout": COMMAND_TIMEOUT,
                "connect_timeout": 1,
            }
        }
    )


async def test_kill_9_of_the_embedded_store_loses_no_acknowledged_create(
    daemon_factory: Any,
) -> None:
    """appendfsync always: every acknowledged write is in the AOF before the reply, so a
    kill -9 of redis-server mid-workload loses nothing; the store actor restarts it."""
    d: Daemon = daemon_factory(fast({"store": {"appendfsync": "always"}}))
    wl = workload(d, tasks=100, workers=8, rate=60)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wl.run, 90)
        with trio.fail_after(60):
            await wl.wait_created(40)
        first = _store_pid(d)
        created_before = len(wl.created)
        killed = wall_ms()
        os.kill(first, signal.SIGKILL)
        with trio.fail_after(20):
            while True:  # the store actor starts a new child on the same socket
                try:
                    if _store_pid(d) != first:
                        break
                except (OSError, ValueError):
                    pass
                await trio.sleep(0.05)  # polls: a new child process has no event to await
    rec = await wl.reconcile()
    assert_reconciled(rec, wl)
    assert 0 < created_before < rec.created, "the kill did not land mid-production"
    back = _first_success_after(wl, killed)
    assert back is not None
    print(
        f"store kill -9: first 2xx {back - killed} ms after the kill; "
        f"503s: {sum(n for (_, s), n in wl.statuses.items() if s == 503)}"
    )
    assert '"store.exited"' in d.log()


async def test_store_unreachable_for_10s_answers_503_fast_and_recovers(
    daemon_factory: Any,
    tmp_path: Path,
) -> None:
    """External store gone for 10 s: every request answers (503) within the command
    timeout + margin, /readyz says 503, and service resumes by itself."""
    server = RedisServer(tmp_path, appendfsync="always")
    server.start()
    try:
        d: Daemon = daemon_factory(_external(server.url))
        wl = workload(d, tasks=100, workers=8, rate=40)
        readyz: list[int] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wl.run, 90)
            with trio.fail_after(60):
                await wl.wait_terminal(20)
            down = wall_ms()
            server.stop(kill=True)
            async with httpx.AsyncClient(timeout=10) as http:
                with trio.move_on_after(10):  # the outage
                    while True:
                        readyz.append((await http.get(f"{d.base}/readyz")).status_code)
                        await trio.sleep(0.5)  # the scenario: /readyz sampled during the outage
            up_at = wall_ms()
            await trio.to_thread.run_sync(server.start)
            up = wall_ms()
        rec = await wl.reconcile()
    finally:
        server.stop()
    assert_reconciled(rec, wl)
    during = _attempts_between(wl, down, up_at)
    assert len(during) > 20, "the workload was idle during the outage"
    slow = [t for t in during if t[2] - t[1] > BOUND_MS]
    assert slow == [], f"requests hung during the outage: {slow[:5]}"
    assert any(t[3] == "503" for t in during)
    assert set(readyz) == {503}, readyz
    back = _first_success_after(wl, up)
    assert back is not None
    print(
        f"store outage: {len(during)} attempts during it, slowest "
        f"{max(t[2] - t[1] for t in during)} ms; service back {back - up} ms after "
        f"the store answered"
    )


async def test_slow_store_is_bounded_by_the_command_timeout(
    daemon_factory: Any,
    tmp_path: Path,
) -> None:
    """Through a proxy adding latency: 100 ms each way still serves; 1.5 s each way
    (past the 2 s command timeout per round trip) answers 503 in bounded time, never a
    hang and never a reply meant for another command; back to 0 it recovers."""
    server = RedisServer(tmp_path, appendfsync="always")
    server.start()
    try:
        async with trio.open_nursery() as nursery:
            async with run_proxy(nursery, server.port) as proxy:
                d: Daemon = daemon_factory(
                    _external(f"redis://127.0.0.1:{proxy.port}"), start=False
                )
                await trio.to_thread.run_sync(d.start)  # the proxy runs on this thread
                wl = workload(d, tasks=60, workers=6, rate=40)
                async with trio.open_nursery() as inner:
                    inner.start_soon(wl.run, 120)
                    with trio.fail_after(60):
                        await wl.wait_terminal(10)
                    proxy.delay = 0.1
                    slowed = wall_ms()
                    with trio.fail_after(60):
                        await wl.wait_terminal(25)
                    proxy.delay = 1.5
                    stalled = wall_ms()
                    # The scenario: the store stays stalled past the bound, so a request
                    # that hung on it would show as one slower than the bound (6 s, the
                    # stall used before, was under it: a hang ended by the heal passed).
                    await trio.sleep(BOUND_MS / 1000 + 1)
                    proxy.delay = 0
                    healed = wall_ms()
                rec = await wl.reconcile()
            nursery.cancel_scope.cancel()
    finally:
        server.stop()
    assert_reconciled(rec, wl)
    slow_phase = _attempts_between(wl, slowed, stalled)
    assert any(t[3].startswith("2") for t in slow_phase), "nothing served at 100 ms each way"
    stall = _attempts_between(wl, stalled, healed)
    assert stall, "the workload was idle while the store stalled"
    hung = [t for t in stall if t[2] - t[1] > BOUND_MS]
    assert hung == [], f"requests not bounded by the timeouts: {hung[:5]}"
    assert any(t[3] == "503" for t in stall)
    print(
        f"slow store: {len(stall)} attempts while stalled, slowest "
        f"{max(t[2] - t[1] for t in stall)} ms, outcomes {sorted({t[3] for t in stall})}"
    )


#: The black-hole test's store timeouts: small, so the whole test stays short.
BLACKHOLE_TIMEOUT = 1.0
#: As BOUND_MS, for the black-hole test's timeouts.
BLACKHOLE_BOUND_MS = (2 * BLACKHOLE_TIMEOUT + 1 + 1.5) * 1000


async def _behind_proxy(daemon_factory: Any, port: int) -> Daemon:
    """A daemon on an external store behind the fault proxy, with short timeouts."""
    config = _external(f"redis://127.0.0.1:{port}")
    config["store"].update(command_timeout=BLACKHOLE_TIMEOUT, connect_timeout=BLACKHOLE_TIMEOUT)
    d: Daemon = daemon_factory(config, start=False)
    await trio.to_thread.run_sync(d.start)  # the proxy runs on this thread
    return d


async def test_black_holed_store_answers_503_in_bounded_time_and_recovers(
    daemon_factory: Any,
    tmp_path: Path,
) -> None:
    """The store stops answering without closing anything (connections accepted, every
    byte swallowed, as behind a dead NAT or a hung host): every request is answered,
    503 or not, within the command timeout + margin; /readyz says 503; no actor's
    failures add up to the supervisor giving up. The path then heals the way a reset
    NAT or a restarted host does, closing the stuck connections; requests succeed
    again and the reconciliation finds nothing lost or stranded. (A path that heals
    without resetting them: the next test.)"""
    server = RedisServer(tmp_path, appendfsync="always")
    server.start()
    try:
        async with trio.open_nursery() as nursery:
            async with run_proxy(nursery, server.port) as proxy:
                d = await _behind_proxy(daemon_factory, proxy.port)
                wl = workload(d, tasks=60, workers=6, rate=40)
                readyz: list[tuple[int, float]] = []
                async with trio.open_nursery() as inner:
                    inner.start_soon(wl.run, 120)
                    with trio.fail_after(60):
                        await wl.wait_terminal(10)
                    proxy.blackhole = True
                    holed = wall_ms()
                    async with httpx.AsyncClient(timeout=10) as http:
                        with trio.move_on_after(8):  # the outage
                            while True:
                                t0 = trio.current_time()
                                r = await http.get(f"{d.base}/readyz")
                                readyz.append((r.status_code, trio.current_time() - t0))
                                await trio.sleep(0.25)  # the scenario: sampling in the outage
                    alive_during = d.proc is not None and d.proc.poll() is None
                    proxy.blackhole = False
                    proxy.cut()  # the stuck connections are reset
                    healed = wall_ms()
                rec = await wl.reconcile()
                alive_after = d.proc is not None and d.proc.poll() is None
            nursery.cancel_scope.cancel()
    finally:
        server.stop()
    assert alive_during and alive_after, f"the daemon exited:\n{d.log()[-3000:]}"
    assert '"supervisor.gave_up"' not in d.log()
    assert_reconciled(rec, wl)
    during = _attempts_between(wl, holed, healed)
    assert len(during) > 10, "the workload was idle while the store was black-holed"
    hung = [t for t in during if t[2] - t[1] > BLACKHOLE_BOUND_MS]
    assert hung == [], f"requests not bounded by the timeouts: {hung[:5]}"
    assert any(t[3] == "503" for t in during)
    # /readyz pings the store once, bounded by the command timeout: 503 within it.
    assert readyz and {s for s, _ in readyz} == {503}, readyz
    assert max(took for _, took in readyz) < BLACKHOLE_TIMEOUT + 1.0, readyz
    back = _first_success_after(wl, healed)
    assert back is not None, "nothing succeeded after the path healed"
    print(
        f"black-holed store: {len(during)} attempts during it, slowest "
        f"{max(t[2] - t[1] for t in during)} ms, outcomes {sorted({t[3] for t in during})}; "
        f"first 2xx {back - healed} ms after healing"
    )


async def test_black_hole_that_heals_without_a_reset_recovers(
    daemon_factory: Any,
    tmp_path: Path,
) -> None:
    """As above, but the path heals silently: the same connections carry bytes again.
    Replies swallowed during the outage never come, so a connection that still waits
    for one must be dropped; service must come back within a few command timeouts."""
    server = RedisServer(tmp_path, appendfsync="always")
    server.start()
    try:
        async with trio.open_nursery() as nursery:
            async with run_proxy(nursery, server.port) as proxy:
                d = await _behind_proxy(daemon_factory, proxy.port)
                producer = d.token("producer", sub="p")
                auth = {"Authorization": f"Bearer {producer}"}
                url = f"{d.base}/v1/codeq/tasks"
                async with httpx.AsyncClient(timeout=10) as http:

                    async def create(i: int) -> int:
                        body = {"command": "bh", "payload": {"i": i}}
                        return (await http.post(url, json=body, headers=auth)).status_code

                    assert [await create(i) for i in range(3)] == [202] * 3
                    proxy.blackhole = True
                    async with trio.open_nursery() as calls:  # in flight when it breaks
                        for i in range(3, 11):
                            calls.start_soon(create, i)
                    assert (await http.get(f"{d.base}/readyz")).status_code == 503
                    proxy.blackhole = False  # the same connections work again
                    statuses = []
                    with trio.move_on_after(10 * BLACKHOLE_TIMEOUT):
                        while (await http.get(f"{d.base}/readyz")).status_code != 200:
                            await trio.sleep(0.2)  # polls the daemon's readiness (bounded)
                        statuses = [await create(i) for i in range(11, 14)]
            nursery.cancel_scope.cancel()
    finally:
        server.stop()
    assert statuses == [202] * 3, "service did not come back after the path healed"
