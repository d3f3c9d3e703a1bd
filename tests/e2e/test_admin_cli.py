"""The admin CLI against a live daemon: tables, --json, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.conftest import REPO, Daemon


def cli(d: Daemon, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEQD_")}
    env.update(
        PYTHONPATH=str(REPO), CODEQD_URL=d.base, CODEQD_TOKEN=token or d.token("admin", sub="ops")
    )
    return subprocess.run(
        [sys.executable, "-m", "codeqd", *args], env=env, capture_output=True, text=True, timeout=30
    )


def test_admin_cli_round_trip(daemon: Daemon) -> None:
    created = cli(
        daemon, "task", "create", "--command", "report", "--payload", '{"n": 1}', "--priority", "3"
    )
    assert created.returncode == 0, created.stderr
    task_id = created.stdout.strip()

    table = cli(daemon, "queues")
    assert table.returncode == 0
    header, row = table.stdout.splitlines()
    assert header.split() == ["COMMAND", "READY", "DELAYED", "IN", "PROGRESS", "DLQ", "PAUSED"]
    assert row.split() == ["report", "1", "0", "0", "0", "no"]

    stats: Any = json.loads(cli(daemon, "queue", "stats", "report", "--json").stdout)
    assert stats["ready"] == 1
    assert cli(daemon, "queue", "pause", "report").stdout.strip() == "report: paused"
    assert json.loads(cli(daemon, "queues", "--json").stdout)[0]["paused"] is True
    assert cli(daemon, "queue", "resume", "report").returncode == 0

    got = json.loads(cli(daemon, "task", "get", task_id, "--json").stdout)
    assert got["id"] == task_id and got["priority"] == 3
    assert cli(daemon, "task", "cancel", task_id).stdout.strip() == f"{task_id}: CANCELLED"
    assert cli(daemon, "dlq", "list", "report").stdout.strip() == "(none)"
    replay = cli(daemon, "dlq", "replay", "report", "nope")
    assert replay.stdout.splitlines() == ["replayed 0", "not found: nope"]


def test_admin_cli_errors_are_one_line(daemon: Daemon) -> None:
    missing = cli(daemon, "task", "get", "01a2080e-f61c-7e06-9370-78e2d01c0800")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "404" in missing.stderr and "Traceback" not in missing.stderr
    denied = cli(daemon, "queues", token=daemon.token("producer"))
    assert denied.returncode == 1 and "403" in denied.stderr
    bad = cli(daemon, "task", "create", "--command", "x", "--payload", "{nope")
    assert bad.returncode == 1 and "--payload is not valid JSON" in bad.stderr
    daemon.stop()
    down = cli(daemon, "queues")
    assert down.returncode == 3 and "cannot reach codeqd" in down.stderr
    assert down.stderr.count("\n") == 1
