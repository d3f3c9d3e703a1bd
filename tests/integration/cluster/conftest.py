"""A real 3-node Redis Cluster (session-scoped) and the integration fixtures pointed at it.

Tests in this directory get ``redis_url`` = ``redis+cluster://...`` of a fresh
(flushed) cluster and a config with ``store.shards = 4``, so the store and
``api`` fixtures of ``tests/integration/conftest.py`` run unchanged against a
cluster whose four shards are spread over three masters.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeqd import config as cfgmod
from tests.conftest import free_port
from tests.integration.conftest import make_config

SHARDS = 4


def free_cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _command(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return out.stdout


class RedisClusterServers:
    """Three ``redis-server --cluster-enabled yes`` masters, slots spread by redis-cli."""

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        self.workdir = workdir
        self.ports = [free_cluster_port() for _ in range(nodes)]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None or shutil.which("redis-cli") is None:
            pytest.fail("redis-server and redis-cli are needed; run `make install`")
        for port in self.ports:
            d = self.workdir / str(port)
            d.mkdir()
            self.procs.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        str(d),
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                        "--appendonly",
                        "no",
                        "--save",
                        "",
                        "--protected-mode",
                        "no",
                        "--loglevel",
                        "warning",
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            self._wait(lambda p=port: _command(p, "PING").strip() == "PONG", "answer PING")
        create = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if create.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed:\n{create.stdout}{create.stderr}")
        for port in self.ports:
            self._wait(
                lambda p=port: "cluster_state:ok" in _command(p, "CLUSTER", "INFO"),
                "reach cluster_state:ok",
            )

    def _wait(self, ok: object, what: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if ok():  # type: ignore[operator]
                return
            if any(p.poll() is not None for p in self.procs):
                pytest.fail("a cluster node exited during start-up")
            time.sleep(0.05)  # fixture set-up outside trio: polling children's readiness
        pytest.fail(f"cluster nodes did not {what} within 20 s")

    def flush(self) -> None:
        for port in self.ports:
            _command(port, "FLUSHALL")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            proc.wait(10)
        self.procs = []


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_url(redis_cluster: RedisClusterServers) -> str:
    """A clean cluster for each test (overrides the single-node ``redis_url``)."""
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def config(tmp_path: Path) -> cfgmod.Config:
    return make_config(tmp_path, store={"shards": SHARDS})


class KvrocksClusterServers:
    """Three KVRocks nodes with ``cluster-enabled yes``; KVRocks has no cluster bus: the
    topology is given to every node with ``CLUSTERX SETNODEID`` / ``CLUSTERX SETNODES``
    (slots 0-5460, 5461-10922, 10923-16383, version 1)."""

    def __init__(self, workdir: Path, binary: str, nodes: int = 3) -> None:
        from tests.conftest import KvrocksServer

        self.servers = [
            KvrocksServer(workdir / f"n{i}", binary=binary, extra={"cluster-enabled": "yes"})
            for i in range(nodes)
        ]
        self.ports = [s.port for s in self.servers]
        self.ids = [f"{i + 1:040x}" for i in range(nodes)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        n = len(self.servers)
        bounds = [round(16384 * i / n) for i in range(n + 1)]
        topology = "\n".join(
            f"{node_id} 127.0.0.1 {port} master - {lo}-{hi - 1}"
            for node_id, port, lo, hi in zip(
                self.ids, self.ports, bounds[:-1], bounds[1:], strict=True
            )
        )
        for server, node_id in zip(self.servers, self.ids, strict=True):
            server.workdir.mkdir()
            server.start()
            assert server.command("CLUSTERX", "SETNODEID", node_id).startswith(b"+OK")
            reply = server.command("CLUSTERX", "SETNODES", topology, "1")
            assert reply.startswith(b"+OK"), reply

    def flush(self) -> None:
        for server in self.servers:
            server.flush()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="session")
def kvrocks_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KvrocksClusterServers]:
    from tests.conftest import need_kvrocks

    cluster = KvrocksClusterServers(tmp_path_factory.mktemp("kvcluster"), need_kvrocks())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
