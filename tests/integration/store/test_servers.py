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
