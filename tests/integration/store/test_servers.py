"""Which servers codeqd works with, decided by what they answer (not by a config flag)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from codeqd.store import Store
from tests.conftest import KvrocksServer


async def test_the_store_names_the_server_it_found(store: Store, store_kind: str) -> None:
    assert await store.server_refusal() is None
    assert store.server.split()[0] == {"redis": "Redis", "kvrocks": "KVRocks"}[store_kind]
    assert await store.client.ping() in ("PONG", b"PONG")


async def test_kvrocks_without_resp3_is_refused_at_start_with_what_to_set(tmp_path: Path) -> None:
    server = KvrocksServer(tmp_path / "kv", extra={"resp3-enabled": "no"})
    server.workdir.mkdir()
    server.start()
    try:
        env = {
            **os.environ,
            "CODEQD_STATE_DIR": str(tmp_path / "state"),
            "CODEQD_STORE__MODE": "external",
            "CODEQD_STORE__URL": server.url,
            "CODEQD_ACTORS__INGRESS__BIND": "127.0.0.1:0",
            "PYTHONPATH": str(Path(__file__).parents[3]),
        }
        with trio.fail_after(30):
            done = await trio.run_process(
                [sys.executable, "-m", "codeqd", "run"],
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    finally:
        server.stop()
    out = (done.stdout + done.stderr).decode()
    assert done.returncode == 2, out
    assert "set `resp3-enabled yes` in kvrocks.conf" in out
    # One message, not a restart loop.
    assert out.count('"event":"supervisor.config_error"') == 1, out
    assert '"event":"actor.crashed"' not in out, out


def _calls(info: dict[str, object], command: str) -> int:
    stat = info.get(f"cmdstat_{command}")
    if isinstance(stat, dict):
        return int(stat.get("calls", 0))  # type: ignore[call-overload]
    if isinstance(stat, str):
        return int(stat.split("calls=", 1)[1].split(",", 1)[0])
    return 0


async def test_on_kvrocks_every_script_runs_inside_exec(store: Store, store_kind: str) -> None:
    """KVRocks: each EVALSHA inside MULTI/EXEC, so a script's writes are one write batch
    (tests/faults/test_kvrocks_crash.py shows why). Redis: plain EVALSHA."""
    from tests.integration.store.test_transitions import new

    info = await store.client.info("commandstats")
    execs, evals = _calls(info, "exec"), _calls(info, "evalsha")
    await store.create("t", new())
    claimed = await store.claim("t", "w", ["c"], 30)
    assert len(claimed) == 1
    info = await store.client.info("commandstats")
    execs, evals = _calls(info, "exec") - execs, _calls(info, "evalsha") - evals
    assert evals >= 2
    assert execs == (evals if store_kind == "kvrocks" else 0)
