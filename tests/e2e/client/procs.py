"""Worker processes for the e2e client tests: started with a daemon's URL and token,
stopped with SIGTERM, their stderr kept in a file for failure messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

from tests.conftest import REPO, Daemon


def env_for(daemon: Daemon, token: str) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)  # `python3` in handlers = this interpreter
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("CODEQD_")},
        "PYTHONPATH": str(REPO),
        "CODEQD_URL": daemon.base,
        "CODEQD_TOKEN": token,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
    }


class WorkerProcess:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log_path = argv, env, log
        self.proc: trio.Process | None = None

    async def __aenter__(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.proc = await trio.lowlevel.open_process(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def terminate(self, timeout: float = 15) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(timeout):
            return await self.proc.wait()

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
