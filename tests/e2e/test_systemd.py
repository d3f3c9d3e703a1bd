"""systemd integration: notify messages on a real NOTIFY_SOCKET, and the unit file."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Daemon


def test_ready_watchdog_and_stopping(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(start=False)
    d.start(env={"WATCHDOG_USEC": "400000"})  # pings every 0.2 s
    ready = next(n for n in d.notifications if "READY=1" in n)
    assert f"STATUS=serving on {d.base}" in ready
    assert d.wait_notification("WATCHDOG=1", 5)
    ping = next(n for n in d.notifications if "WATCHDOG=1" in n)
    assert "STATUS=serving on" in ping and "0 long-polls waiting; 0 actor restarts" in ping
    assert d.stop() == 0
    assert d.wait_notification("STOPPING=1", 1)


def test_no_watchdog_for_another_pid(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory(start=False)
    d.start(env={"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    assert not d.wait_notification("WATCHDOG=1", 1)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_unit_file_verifies() -> None:
    r = subprocess.run(
        ["systemd-analyze", "verify", str(REPO / "systemd" / "codeqd.service")],
        capture_output=True,
        text=True,
    )
    # The ExecStart binary does not exist on a build machine; anything else is an error.
    problems = [
        ln for ln in r.stderr.splitlines() if ln.strip() and "/opt/codeqd/bin/codeqd" not in ln
    ]
    assert problems == []


def test_deploy_steps_put_state_dir_in_the_units_state_directory(tmp_path: Path) -> None:
    """deploy/README.md copies the example config and rewrites its state_dir with one
    sed line; run that line on a copy, then check-config as the unit would (cwd /,
    $STATE_DIRECTORY set): state_dir must be the unit's StateDirectory, since
    ProtectSystem=strict leaves nothing else writable."""
    unit = (REPO / "systemd" / "codeqd.service").read_text()
    assert "\nStateDirectory=codeqd\n" in unit and "\nWorkingDirectory=/var/lib/codeqd\n" in unit
    steps = (REPO / "deploy" / "README.md").read_text()
    (sed,) = [ln for ln in steps.splitlines() if ln.startswith("sudo sed -i") and "state_dir" in ln]
    target = tmp_path / "codeqd.toml"
    shutil.copy(REPO / "config" / "codeqd.example.toml", target)
    cmd = sed.removeprefix("sudo ").replace("/etc/codeqd/codeqd.toml", shlex.quote(str(target)))
    subprocess.run(["bash", "-c", cmd], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEQD_")}
    env.update(PYTHONPATH=str(REPO), STATE_DIRECTORY="/var/lib/codeqd")
    out = subprocess.run(
        [sys.executable, "-m", "codeqd", "check-config", "--config", str(target)],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert '"state_dir": "/var/lib/codeqd"' in out.stdout
