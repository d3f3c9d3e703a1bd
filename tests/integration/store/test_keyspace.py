"""The shard count is fixed at first start: a daemon with another count refuses to start."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from codeqd.store import Store


async def test_daemon_with_another_shard_count_exits_with_a_clear_message(
    store: Store, redis_url: str, tmp_path: Path
) -> None:
    assert store.shards == 1  # the fixture initialised the keyspace with 1 shard
    env = {
        **os.environ,
        "CODEQD_STATE_DIR": str(tmp_path / "state"),
        "CODEQD_STORE__MODE": "external",
        "CODEQD_STORE__URL": redis_url,
        "CODEQD_STORE__SHARDS": "4",
        "CODEQD_ACTORS__INGRESS__BIND": "127.0.0.1:0",
        "PYTHONPATH": str(Path(__file__).parents[3]),
    }
    done = await trio.run_process(
        [sys.executable, "-m", "codeqd", "run"],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    out = (done.stdout + done.stderr).decode()
    assert done.returncode == 2, out
    assert "store.shards = 4, but this keyspace (prefix 'codeq') was initialised with 1" in out
