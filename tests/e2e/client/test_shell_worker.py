"""`codeqd worker -- COMMAND`: a handler that succeeds, one that fails, one that times out."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from codeqd import cli
from codeqd.client import AsyncProducer
from tests.conftest import Daemon
from tests.e2e.client.conftest import wait_until
from tests.e2e.client.procs import WorkerProcess, env_for

HANDLER = """#!/bin/sh
case "$CODEQ_COMMAND" in
  shok)
    payload=$(cat)
    printf '{"id":"%s","attempt":%s,"max":"%s","payload":%s}\\n' \\
      "$CODEQ_TASK_ID" "$CODEQ_ATTEMPT" "$CODEQ_MAX_ATTEMPTS" "$payload" ;;
  shfail)
    echo "some noise" >&2
    echo "disk full on /data" >&2
    exit 3 ;;
  shslow)
    sleep 30  # a child of the shell: the timeout must kill the whole group
    echo '{"late": true}' ;;
esac
"""


async def test_shell_worker_succeeds_fails_and_times_out(
    shared_daemon: Daemon, producer: AsyncProducer, tmp_path: Path
) -> None:
    handler = tmp_path / "handler.sh"
    handler.write_text(HANDLER)
    handler.chmod(0o755)
    ok = await producer.create("shok", {"n": 1}, max_attempts=3)
    # shfail/shslow retry after 60 s on this daemon, so the nack's reason stays visible.
    fail = await producer.create("shfail", {}, max_attempts=3)
    slow = await producer.create("shslow", {}, max_attempts=3)
    token = shared_daemon.token("worker", sub="shell", events=["shok", "shfail", "shslow"])
    argv = [
        sys.executable,
        "-m",
        "codeqd",
        "worker",
        "--events",
        "shok,shfail,shslow",
        "--concurrency",
        "3",
        "--timeout",
        "1",
        "--grace",
        "1",
        "--",
        str(handler),
    ]
    async with WorkerProcess(argv, env_for(shared_daemon, token), tmp_path / "w.log") as w:
        try:
            done = await producer.result(ok.id, wait=20)
            assert done.task.status == "COMPLETED" and done.result is not None
            assert done.result.result == {
                "id": ok.id,
                "attempt": 1,
                "max": "3",
                "payload": {"n": 1},
            }

            async def nacked(task_id: str) -> bool:
                t = await producer.get(task_id)
                return t.status == "PENDING" and t.error is not None

            await wait_until(lambda: nacked(fail.id), timeout=15)
            failed = await producer.get(fail.id)
            assert failed.attempts == 1
            assert failed.error == "exit 3: some noise\ndisk full on /data"

            started = time.monotonic()
            await wait_until(lambda: nacked(slow.id), timeout=15)
            assert time.monotonic() - started < 10  # killed, not waited for (sleep 30)
            assert (await producer.get(slow.id)).error == "timed out after 1s (killed)"
            assert await w.terminate() == 0
        except BaseException:
            print(w.log())
            raise
    assert "worker.stopped" in w.log()


def test_shell_worker_errors_are_one_line(
    shared_daemon: Daemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CODEQD_TOKEN", raising=False)
    monkeypatch.setenv("CODEQD_URL", shared_daemon.base)

    def run(*args: str) -> tuple[int, list[str]]:
        code = cli.main(["worker", *args])
        return code, capsys.readouterr().err.strip().splitlines()

    assert run("--events", "a", "--", "true") == (
        2,
        [
            "codeqd worker: no token; pass --token or set CODEQD_TOKEN "
            "(dev: codeqd token --role worker)"
        ],
    )
    assert run("--token", "t", "--", "/no/such/handler") == (
        2,
        ["codeqd worker: /no/such/handler: not found or not executable"],
    )
    code, err = run("--token", "bad-token", "--events", "a", "--wait", "0", "--", "true")
    assert code == 1 and err[-1].startswith("codeqd worker: 401 ")
    assert not any("Traceback" in line for line in err)
