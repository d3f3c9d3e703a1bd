"""The processes under test: the real daemon (``python -m codeqd run``) and the bare
endpoint, each a child of the benchmark, plus what /proc says about them."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from codeqd.auth import mint_dev_token
from tests.bench._http import Connection
from tests.conftest import free_port

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE


class Child:
    def __init__(
        self,
        args: list[str],
        port: int,
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.log = log
        self.proc = subprocess.Popen(
            args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait_ready(self, path: str, timeout: float = 30) -> None:
        with trio.fail_after(timeout):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"child exited with {self.proc.returncode}; see {self.log}")
                try:
                    conn = await Connection.open("127.0.0.1", self.port)
                    status, _ = await conn.request("GET", path)
                    await conn.aclose()
                    if status < 500:
                        return
                except OSError:
                    pass
                await trio.sleep(0.1)  # polls the child until it answers (bounded above)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_bare(workdir: Path, kind: str) -> Child:
    port = free_port()
    return Child(
        [sys.executable, "-m", "tests.bench._bare", str(port), kind],
        port,
        workdir / f"bare-{kind}.log",
    )


def store_toml(server_bin: str, appendfsync: str) -> str:
    """A daemon config's ``[store]`` for an embedded ``server_bin`` (redis-server or
    kvrocks) at ``appendfsync``."""
    return f'[store]\nserver_bin = "{server_bin}"\nappendfsync = "{appendfsync}"\n'


class Daemon(Child):
    """``python -m codeqd run`` with an embedded store under ``workdir``."""

    def __init__(self, workdir: Path, name: str, extra_toml: str = "", processes: int = 1) -> None:
        self.secret = secrets.token_urlsafe(24)
        self.state_dir = workdir / f"{name}-state"
        port = free_port()
        config = workdir / f"{name}.toml"
        config.write_text(
            f'state_dir = "{self.state_dir}"\n'
            f'[auth]\nmode = "dev"\ndev_secret = "{self.secret}"\n'
            f'[actors.ingress]\nbind = "127.0.0.1:{port}"\nprocesses = {processes}\n'
            f"{extra_toml}"
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
        super().__init__(
            [sys.executable, "-m", "codeqd", "run", "--config", str(config)],
            port,
            workdir / f"{name}.log",
            env,
        )
        self.producer = mint_dev_token(self.secret, "producer", sub="bench-producer", ttl=86400)
        self.worker = mint_dev_token(self.secret, "worker", sub="bench-worker", ttl=86400)

    @property
    def store_socket(self) -> Path:
        return self.state_dir / "store" / "redis.sock"

    @property
    def store_url(self) -> str:
        """The embedded store's address: redis-server's unix socket, or the loopback port
        of KVRocks (which has no port 0: codeqd picks one and writes it in its config)."""
        conf = self.state_dir / "store" / "kvrocks.conf"
        if conf.exists():
            for line in conf.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "port":
                    return f"redis://127.0.0.1:{value.strip()}"
        return f"unix://{self.store_socket}"

    def store_pid(self) -> int | None:
        try:
            return int((self.state_dir / "store" / "redis.pid").read_text())
        except (OSError, ValueError):
            return None


def now() -> float:
    return time.perf_counter()


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def metric(conn: Connection, name: str, **labels: str) -> float:
    """The sum of the daemon's ``/metrics`` samples called ``name`` whose labels
    include ``labels``."""
    status, body = await conn.request("GET", "/metrics")
    assert status == 200, body[:200]
    return sum(
        s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
