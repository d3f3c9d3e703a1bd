"""``redis+cluster://user:pass@...`` keeps its credentials: an authenticated Redis
Cluster (one node holding every slot, an ACL user) serves the store, its scripts
(loaded again after SCRIPT FLUSH, on the primaries) and its wake-ups."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from codeqd.store import Store, connect
from codeqd.store._hints import QueueWork, Resync
from tests.integration.cluster.conftest import free_cluster_port
from tests.integration.conftest import make_config
from tests.integration.store.test_transitions import new

PASSWORD = "s3cret-p@ss"


def _cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "--user", "admin", "--pass", "adminpw", "--no-auth-warning",
         *args],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    return out.stdout


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; run `make install`")
    port = free_cluster_port()  # its cluster-bus port (+10000) must be free too
    workdir = tmp_path_factory.mktemp("authcluster")
    proc = subprocess.Popen(
        [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
            "--cluster-enabled", "yes", "--save", "", "--appendonly", "no",
            "--user", "default", "off",
            "--user", "admin", "on", ">adminpw", "~*", "&*", "+@all",
            "--user", "app", "on", f">{PASSWORD}", "~*", "&*", "+@all",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while "PONG" not in _cli(port, "PING"):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)  # fixture set-up outside trio: polling a child's readiness
        assert "OK" in _cli(port, "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        while "cluster_state:ok" not in _cli(port, "CLUSTER", "INFO"):
            assert time.monotonic() < deadline
            time.sleep(0.05)  # idem
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_credentials_in_a_cluster_url_are_used(
    nursery: trio.Nursery, auth_cluster: int, tmp_path: Path
) -> None:
    url = f"redis+cluster://app:{PASSWORD.replace('@', '%40')}@127.0.0.1:{auth_cluster}"
    config = make_config(tmp_path, store={"shards": 2})
    async with connect(config, url) as store:
        s: Store = store
        await s.init_keyspace()
        assert await s.server_refusal() is None
        box = s.wakeups.inbox("test", (QueueWork, Resync))
        await nursery.start(s.wakeups.run)
        with trio.fail_after(5):
            while not s.wakeups.connected:
                await box.get()
        assert "OK" in _cli(auth_cluster, "SCRIPT", "FLUSH")  # NOSCRIPT, then SCRIPT LOAD
        async with connect(config, url) as other:
            meta = (await other.create("t", new("auth")))[0]
            with trio.fail_after(2):
                while not isinstance(hint := await box.get(), QueueWork):
                    pass
            assert hint.command == "auth"
        claimed = await s.claim("t", "w", ["auth"], 30)
        assert [t.meta["id"] for t in claimed] == [meta["id"]]
