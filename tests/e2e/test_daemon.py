"""The real daemon process: lifecycle over HTTP, shutdown, crash and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.conftest import REPO, Daemon
from tests.e2e.conftest import Client


def _store_pid(d: Daemon) -> int:
    return int((d.state_dir / "store" / "redis.pid").read_text())


def _alive(pid: int) -> bool:
    try:
        return (
            b"redis" in Path(f"/proc/{pid}/cmdline").read_bytes()
            and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        )
    except OSError:
        return False


async def test_full_lifecycle(client: Client) -> None:
    low = await client.create("email", {"to": "a@example.com"}, priority=1)
    high = await client.create("email", {"to": "b@example.com"}, priority=7)
    r = await client.claim(commands=["email"], leaseSeconds=30)
    assert r.status_code == 200
    claimed = r.json()
    assert claimed["id"] == high["id"] and claimed["status"] == "IN_PROGRESS"
    assert (await client.complete(claimed, {"sent": True})).status_code == 200
    r = await client.call("GET", f"/tasks/{high['id']}/result", client.producer)
    assert r.json()["result"]["result"] == {"sent": True}
    assert (await client.get(low["id"]))["status"] == "PENDING"
    r = await client.http.get(f"{client.daemon.base}/healthz")
    assert r.json() == {"status": "ok"}
    assert (await client.http.get(f"{client.daemon.base}/readyz")).status_code == 200
    # Every request is logged with its ids; no token or secret ever is.
    log = client.daemon.log()
    line = next(ln for ln in log.splitlines() if high["id"] in ln and "/result" in ln)
    for field in (
        '"method":"POST"',
        '"status":200',
        '"request_id":',
        '"tenant":"default"',
        '"duration_ms":',
        '"route":"/v1/codeq/tasks/<task_id>/result"',
    ):
        assert field in line
    # The create's and the claim's lines name the task they made or handed out.
    for route, status in (("/v1/codeq/tasks", 202), ("/v1/codeq/tasks/claim", 200)):
        assert any(
            f'"route":"{route}"' in ln
            and f'"status":{status}' in ln
            and f'"task_id":"{high["id"]}"' in ln
            for ln in log.splitlines()
        ), route
    for secret in (client.producer, client.worker, client.daemon.dev_secret):
        assert secret not in log


async def test_delayed_task_is_promoted(client: Client) -> None:
    task = await client.create("later", {}, delaySeconds=1)
    assert (await client.claim(commands=["later"])).status_code == 204
    with trio.fail_after(10):
        r = await client.claim(commands=["later"], waitSeconds=8)
    assert r.status_code == 200 and r.json()["id"] == task["id"]


async def test_lease_expiry_retries_then_dead_letters(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(
        {
            "actors": {"reaper": {"interval": "100ms"}, "promoter": {"interval": "100ms"}},
            "backoff": {"policy": "fixed", "base": 0, "max": 0},
        }
    )
    async with httpx.AsyncClient(timeout=30) as http:
        c = Client(d, http)
        task = await c.create("flaky", {}, maxAttempts=2)
        for attempt in (1, 2):
            with trio.fail_after(10):
                r = await c.claim(commands=["flaky"], leaseSeconds=1, waitSeconds=8)
            assert r.status_code == 200 and r.json()["attempts"] == attempt
        with trio.fail_after(10):
            r = await c.call("GET", f"/tasks/{task['id']}/result?waitSeconds=8", c.producer)
        body = r.json()
        assert body["task"]["status"] == "FAILED" and body["task"]["error"] == "MAX_ATTEMPTS"
        r = await c.call("GET", "/admin/queues/flaky/dlq", c.admin)
        assert [t["id"] for t in r.json()["tasks"]] == [task["id"]]


async def test_long_poll_is_woken_by_a_create_not_by_polling(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory({"actors": {"ingress": {"poll_fallback": "60s"}}})
    async with httpx.AsyncClient(timeout=40) as http:
        c = Client(d, http)
        got: list[httpx.Response] = []
        answered = trio.Event()

        async def waiter() -> None:
            got.append(await c.claim(commands=["wake"], waitSeconds=30))
            answered.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await c.wait_parked(1)  # the claim looked, found nothing, and waits
            created = await c.create("wake", {"n": 1})
            # Far below both the 30 s wait and the 60 s fallback: only a wake-up ends it.
            with trio.fail_after(5):
                await answered.wait()
        assert got[0].status_code == 200, got[0].text
        assert got[0].json()["id"] == created["id"]


async def test_sigterm_answers_long_polls_and_exits_clean(daemon: Daemon, client: Client) -> None:
    store_pid = _store_pid(daemon)
    results: list[int] = []

    async def long_poll() -> None:
        r = await client.claim(commands=["idle"], waitSeconds=30)
        results.append(r.status_code)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_poll)
        await client.wait_parked(1)  # the stop must find the long-poll waiting
        daemon.signal(signal.SIGTERM)
    assert results == [204]
    assert daemon.proc is not None
    assert await trio.to_thread.run_sync(daemon.proc.wait, 15) == 0
    assert not _alive(store_pid), "the embedded store outlived the daemon"
    assert "STOPPING=1" in "".join(daemon.notifications) or daemon.wait_notification(
        "STOPPING=1", 1
    )
    assert '"supervisor.stopped"' in daemon.log()


async def test_kill_9_loses_nothing_and_strands_nothing(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(
        {
            "store": {"appendfsync": "always"},
            "actors": {"reaper": {"interval": "100ms"}, "promoter": {"interval": "100ms"}},
            "backoff": {"policy": "fixed", "base": 0, "max": 0},
        }
    )
    async with httpx.AsyncClient(timeout=30) as http:
        c = Client(d, http)
        ids = [(await c.create("job", {"i": i}))["id"] for i in range(30)]
        done = []
        for _ in range(10):  # 10 completed, 10 in progress, 10 pending at the crash
            t = (await c.claim(commands=["job"], leaseSeconds=1)).json()
            assert (await c.complete(t)).status_code == 200
            done.append(t["id"])
        for _ in range(10):
            assert (await c.claim(commands=["job"], leaseSeconds=1)).status_code == 200
        store_pid = _store_pid(d)
        d.stop(kill=True)
        with trio.fail_after(10):  # the store child follows its parent (PDEATHSIG)
            while _alive(store_pid):
                await trio.sleep(0.05)  # polls: another process's death has no event here
        await trio.to_thread.run_sync(d.start)
        for tid in done:
            assert (await c.get(tid))["status"] == "COMPLETED"
        finished = set(done)
        with trio.fail_after(30):
            while len(finished) < len(ids):
                r = await c.claim(commands=["job"], leaseSeconds=30, waitSeconds=5)
                if r.status_code == 200:
                    t = r.json()
                    assert (await c.complete(t)).status_code == 200
                    finished.add(t["id"])
        assert finished == set(ids)
        for tid in ids:
            assert (await c.get(tid))["status"] == "COMPLETED"


async def test_a_leftover_store_is_taken_over(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(start=False)
    d.start()
    first = _store_pid(d)
    # Simulate a store that survived its parent (e.g. PDEATHSIG unavailable).
    os.kill(first, signal.SIGSTOP)
    d.stop(kill=True)
    os.kill(first, signal.SIGCONT)
    await trio.to_thread.run_sync(d.start)
    assert _store_pid(d) != first and not _alive(first)


def test_cli_check_config_and_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEQD_")}
    env.update(PYTHONPATH=str(REPO), CODEQD_STATE_DIR=str(tmp_path))
    run = [sys.executable, "-m", "codeqd"]
    ok = subprocess.run([*run, "check-config"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and '"mode": "embedded"' in ok.stdout
    bad = subprocess.run(
        [*run, "check-config"],
        capture_output=True,
        text=True,
        env={**env, "CODEQD_ACTORS__REAPER__BATCH": "0"},
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == "codeqd: config error: actors.reaper.batch: must be between 1 and 100000"
    )
    tok = subprocess.run(
        [*run, "token", "--role", "worker", "--events", "a,b"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert tok.returncode == 0 and tok.stdout.count(".") == 2
    assert (tmp_path / "dev_secret").exists()


async def test_janitor_removes_terminal_tasks_past_retention(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(
        {"tasks": {"retention": "200ms"}, "actors": {"janitor": {"interval": "100ms"}}}
    )
    async with httpx.AsyncClient(timeout=30) as http:
        c = Client(d, http)
        done = await c.create("old", {})
        t = (await c.claim(commands=["old"])).json()
        assert (await c.complete(t)).status_code == 200
        pending = await c.create("old", {})
        with trio.fail_after(10):
            while (await c.call("GET", f"/tasks/{done['id']}", c.producer)).status_code != 404:
                await trio.sleep(0.05)  # polls the daemon (another process) for the removal
        assert (await c.get(pending["id"]))["status"] == "PENDING"


async def test_multi_process_ingress_wakes_across_processes(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory({"actors": {"ingress": {"processes": 2, "poll_fallback": "60s"}}})
    children = _children_of(d)
    assert len([c for c in children if b"_ingress_child" in c[1]]) == 2
    async with httpx.AsyncClient(
        timeout=40, limits=httpx.Limits(max_keepalive_connections=0)
    ) as http:
        c = Client(d, http)
        # Enough idle long-polls that both processes hold some; each create wakes one.
        got: list[str] = []
        all_answered = trio.Event()

        async def waiter() -> None:
            r = await c.claim(commands=["spread"], waitSeconds=30)
            got.append(r.json()["id"])
            if len(got) == 6:
                all_answered.set()

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(waiter)
            await c.wait_parked(6)  # every claim looked, found nothing, and waits
            created = {(await c.create("spread", {"i": i}))["id"] for i in range(6)}
            # Far below both the 30 s wait and the 60 s fallback: only wake-ups end them.
            with trio.fail_after(10):
                await all_answered.wait()
        assert set(got) == created
    pids = [pid for pid, cmd in children if b"_ingress_child" in cmd]
    assert d.stop() == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def _children_of(d: Daemon) -> list[tuple[int, bytes]]:
    assert d.proc is not None
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == d.proc.pid:
                    out.append((int(entry.name), (entry / "cmdline").read_bytes()))
            except (OSError, ValueError):
                continue
    return out
