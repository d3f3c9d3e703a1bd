"""The scripts in examples/ against a real daemon, as a reader would run them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

from tests.conftest import REPO, Daemon
from tests.e2e.client.procs import WorkerProcess, env_for

EXAMPLES = REPO / "examples"


async def _produce(daemon: Daemon, *args: str) -> list[dict[str, object]]:
    env = env_for(daemon, daemon.token("producer", tenant="examples"))
    with trio.fail_after(30):
        proc = await trio.run_process(
            [sys.executable, str(EXAMPLES / "producer.py"), *args],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(line) for line in proc.stdout.decode().splitlines()]


async def test_python_worker_example(shared_daemon: Daemon, tmp_path: Path) -> None:
    token = shared_daemon.token("worker", tenant="examples", events=["greet", "word-count"])
    argv = [sys.executable, str(EXAMPLES / "worker.py")]
    async with WorkerProcess(argv, env_for(shared_daemon, token), tmp_path / "w.log") as w:
        greeted = await _produce(shared_daemon, "--command", "greet", "ada", "grace")
        counted = await _produce(shared_daemon, "--command", "word-count", "--", "x")
        assert await w.terminate() == 0, w.log()
    assert [r["result"] for r in greeted] == [
        {"greeting": "hello, ada"},
        {"greeting": "hello, grace"},
    ]
    assert all(r["status"] == "COMPLETED" and r["attempts"] == 1 for r in greeted)
    assert counted[0]["result"] == {"words": 0}


async def test_shell_handler_example(shared_daemon: Daemon, tmp_path: Path) -> None:
    token = shared_daemon.token("worker", tenant="examples", events=["shout"])
    argv = [
        sys.executable,
        "-m",
        "codeqd",
        "worker",
        "--events",
        "shout",
        "--concurrency",
        "2",
        "--",
        str(EXAMPLES / "handler.sh"),
    ]
    async with WorkerProcess(argv, env_for(shared_daemon, token), tmp_path / "w.log") as w:
        shouted = await _produce(shared_daemon, "--command", "shout", "ada", "linus")
        assert await w.terminate() == 0, w.log()
    assert [r["result"] for r in shouted] == [{"shout": "ADA!"}, {"shout": "LINUS!"}]
