"""systemd integration: notify messages on a real NOTIFY_SOCKET, and the unit file."""

from __future__ import annotations

import shutil
import subprocess
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
