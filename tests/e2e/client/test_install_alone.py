"""The client installs alone: ``pip install ./client`` into a fresh venv pulls httpx and
anyio (and their own dependencies), nothing of the daemon, and works against a daemon.

Uses pip as configured on this machine (its index and cache), as ``make install`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, Daemon

#: What ``pip install ./client`` may bring: the client, httpx, anyio and wsproto, and theirs.
ALLOWED = {
    "codeqd-client",
    "httpx",
    "anyio",
    "wsproto",  # the worker stream's WebSocket framing (pure Python, needs only h11)
    "httpcore",
    "h11",
    "idna",
    "certifi",
    "sniffio",
    "typing-extensions",
    "pip",  # the venv's own
    "setuptools",  # older pythons' venvs bring it
}
#: The daemon's own dependencies: none of them may come along.
DAEMON_ONLY = {
    "codeqd",
    "trio",
    "hypercorn",
    "quart",
    "quart-trio",
    "coredis",
    "prometheus-client",
    "structlog",
    "pyjwt",
    "orjson",
    "cryptography",
}

ROUND_TRIP = textwrap.dedent(
    """
    import asyncio, json, sys
    from codeqd_client import Producer, worker
    from codeqd_client.webhooks import sign, verify

    base, producer_token, worker_token, command = sys.argv[1:]
    stop = asyncio.Event()

    async def handle(task):
        stop.set()
        return {"got": task.payload["n"], "loop": worker.default_backend()}

    with Producer(base, producer_token) as p:
        created = p.create(command, {"n": 5})
        worker.run_sync(
            {command: handle}, url=base, token=worker_token, wait_seconds=1,
            handle_signals=False, shutdown=stop,
        )
        done = p.result(created.id, wait=10)
    headers = sign("s", b"{}")
    print(json.dumps({
        "status": done.task.status,
        "result": done.result.result if done.result else None,
        "verified": verify("s", b"{}", headers["X-CodeQ-Timestamp"], headers["X-CodeQ-Signature"]),
        "modules": sorted(m for m in ("trio", "codeqd", "orjson") if m in sys.modules),
    }))
    """
)


def _run(argv: list[str], cwd: Path, timeout: float = 120) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{argv}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_client_installs_alone_and_works(shared_daemon: Daemon, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    py, bin_dir = venv / "bin" / "python", venv / "bin"
    pip = [str(py), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "-q", str(REPO / "client")], tmp_path, timeout=300)

    listing = json.loads(_run([*pip, "list", "--format", "json"], tmp_path))
    names = {d["name"].lower().replace("_", "-") for d in listing}
    print("pip install ./client pulled:", sorted(f"{d['name']}=={d['version']}" for d in listing))
    assert {"codeqd-client", "httpx", "anyio"} <= names
    assert names <= ALLOWED, f"unexpected: {sorted(names - ALLOWED)}"
    assert not names & DAEMON_ONLY

    # The shell worker's script is there and starts without the daemon's packages.
    help_text = _run([str(bin_dir / "codeqd-worker"), "--help"], tmp_path)
    assert "usage: codeqd-worker" in help_text and "CODEQ_TASK_ID" in help_text

    # A task created, run by the worker runner (on asyncio: trio is absent) and read back.
    out = _run(
        [
            str(py),
            "-c",
            ROUND_TRIP,
            shared_daemon.base,
            shared_daemon.token("producer"),
            shared_daemon.token("worker", sub="installed-alone", events=["alone"]),
            "alone",
        ],
        tmp_path,
        timeout=60,
    )
    report = json.loads(out.strip().splitlines()[-1])
    assert report == {
        "status": "COMPLETED",
        "result": {"got": 5, "loop": "asyncio"},
        "verified": True,
        "modules": [],
    }
