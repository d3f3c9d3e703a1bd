"""Fixtures shared by every test: a real redis-server on a free port, and the real
daemon (``python -m codeqd run``) as a child process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codeqd import logsetup
from codeqd.config import LogConfig

REPO = Path(__file__).resolve().parents[1]


# JSON lines: cheap to render, and captured per test for failure reports.
logsetup.configure(LogConfig(level="info", format="json"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server child process; ``restart`` keeps port and data dir."""

    def __init__(self, workdir: Path, appendfsync: str = "everysec") -> None:
        self.workdir = workdir
        self.port = free_port()
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; run `make install`")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--save",
                "",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
        )
        self.wait_ready("redis-server", 10)

    def wait_ready(self, name: str, timeout: float) -> None:
        """Until the child answers PING; fails the test if it exits or stays silent."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                pytest.fail(f"{name} exited with {self.proc.returncode}; see {self.workdir}")
            time.sleep(0.02)  # fixture set-up outside trio: polling a child's readiness
        pytest.fail(f"{name} did not answer within {timeout:g} s")

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)

    def command(self, *args: str) -> bytes:
        """One command with a short reply, raw (for tests and fixtures not in a trio run)."""
        cmd = b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"*%d\r\n" % len(args) + cmd)
            return s.recv(4096)

    def integer(self, *args: str) -> int:
        """A command whose reply is an integer (DBSIZE, HLEN, SLOWLOG LEN...)."""
        reply = self.command(*args)
        assert reply.startswith(b":"), reply
        return int(reply[1:].split(b"\r\n", 1)[0])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean store for each test."""
    redis_server.flush()
    return redis_server.url


# ------------------------------------------------------------------ KVRocks

# Read and removed: the daemons the tests start read CODEQD_* as config overrides.
#: Set by .ci/run: a missing KVRocks binary fails the KVRocks tests instead of skipping them.
REQUIRE_KVROCKS = os.environ.pop("CODEQD_REQUIRE_KVROCKS", "") not in ("", "0")
KVROCKS_BIN = os.environ.pop("CODEQD_TEST_KVROCKS_BIN", "")
_kvrocks_missing: list[str] = []


def _main_checkout() -> Path:
    """The repository's main checkout (this one, or the one a git worktree belongs to)."""
    dotgit = REPO / ".git"
    if dotgit.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/<name>"
        gitdir = Path(dotgit.read_text().split(":", 1)[1].strip())
        for parent in gitdir.parents:
            if parent.name == ".git":
                return parent.parent
    return REPO


def kvrocks_binary() -> str | None:
    """$CODEQD_TEST_KVROCKS_BIN, ../shared/kvrocks/kvrocks next to the repository, or
    ``kvrocks`` on PATH."""
    if KVROCKS_BIN:
        return KVROCKS_BIN if os.access(KVROCKS_BIN, os.X_OK) else None
    for root in (REPO, _main_checkout()):
        candidate = root.parent / "shared" / "kvrocks" / "kvrocks"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("kvrocks")


def need_kvrocks() -> str:
    """The binary, or skip the test (fail it under CODEQD_REQUIRE_KVROCKS=1)."""
    binary = kvrocks_binary()
    if binary is None:
        why = (
            "no kvrocks binary ($CODEQD_TEST_KVROCKS_BIN, ../shared/kvrocks/kvrocks, "
            "or kvrocks on PATH)"
        )
        if REQUIRE_KVROCKS:
            pytest.fail(f"CODEQD_REQUIRE_KVROCKS=1 but {why}")
        _kvrocks_missing.append(why)
        pytest.skip(f"KVRocks suites not run: {why}")
    return binary


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line saying the KVRocks suites did not run, and why (a clone without the binary)."""
    if not _kvrocks_missing:
        return
    skipped = [
        r
        for r in terminalreporter.stats.get("skipped", [])
        if "KVRocks suites not run" in str(getattr(r, "longrepr", ""))
    ]
    terminalreporter.write_line(
        f"KVRocks suites not run: {_kvrocks_missing[0]} ({len(skipped)} tests skipped)",
        yellow=True,
        bold=True,
    )


def kvrocks_conf(
    port: int, workdir: Path, sync: bool = False, extra: dict[str, str] | None = None
) -> str:
    """A kvrocks.conf for tests: loopback, RESP3 on, data and log under ``workdir``."""
    opts = {
        "bind": "127.0.0.1",
        "port": str(port),
        "dir": str(workdir),
        "resp3-enabled": "yes",
        "workers": "4",
        "log-dir": str(workdir),
        "rocksdb.write_options.sync": "yes" if sync else "no",
        **(extra or {}),
    }
    return "".join(f"{k} {v}\n" for k, v in opts.items())


class KvrocksServer(RedisServer):
    """A KVRocks child process (``resp3-enabled yes``); ``restart`` keeps port and data."""

    def __init__(
        self,
        workdir: Path,
        sync: bool = False,
        binary: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        super().__init__(workdir)
        self.sync = sync
        self.extra = extra
        self.binary = binary or need_kvrocks()

    def start(self) -> None:
        conf = self.workdir / "kvrocks.conf"
        conf.write_text(kvrocks_conf(self.port, self.workdir, self.sync, self.extra))
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.wait_ready("kvrocks", 20)

    def flush(self) -> None:
        reply = self.command("FLUSHALL")
        assert reply.startswith(b"+OK"), reply


@pytest.fixture(scope="session")
def kvrocks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KvrocksServer]:
    binary = need_kvrocks()
    server = KvrocksServer(tmp_path_factory.mktemp("kvrocks"), binary=binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def kvrocks_url(kvrocks_server: KvrocksServer) -> str:
    """A clean KVRocks for each test."""
    kvrocks_server.flush()
    return kvrocks_server.url


@pytest.fixture(params=["redis", "kvrocks"])
def any_store_url(request: pytest.FixtureRequest) -> str:
    """A clean store of each kind in turn: redis-server, then KVRocks."""
    name = "redis_url" if request.param == "redis" else "kvrocks_url"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML for test configs: scalars, lists and nested tables."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            name = f"{prefix}{k}"
            lines.append(f"\n[{name}]")
            lines.append(to_toml(v, name + "."))
    return "\n".join(lines)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Daemon:
    """The real daemon as a child process, with its own config, state dir and port.

    ``start`` returns once the daemon has told systemd's notify socket (one the
    fixture listens on) READY=1, i.e. the store answers and the socket listens.
    """

    def __init__(self, workdir: Path, config: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.state_dir = workdir / "state"
        self.dev_secret = "test-dev-secret-0123456789abcdef-" + workdir.name
        self.config = merge(
            {
                "state_dir": str(self.state_dir),
                "auth": {"dev_secret": self.dev_secret},
                # One ingress process unless a test asks for more (the default,
                # "auto", is tested on its own).
                "actors": {"ingress": {"bind": f"127.0.0.1:{self.port}", "processes": 1}},
                "shutdown": {"grace_seconds": 5},
            },
            config or {},
        )
        self.config_path = workdir / "codeqd.toml"
        self.log_path = workdir / "codeqd.log"
        self.notify_path = workdir / "notify.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.notifications: list[str] = []
        self._notify: socket.socket | None = None

    def write_config(self, extra: dict[str, Any] | None = None) -> None:
        self.config = merge(self.config, extra or {})
        self.config_path.write_text(to_toml(self.config))

    def token(self, role: str, **kw: Any) -> str:
        from codeqd.auth import mint_dev_token

        return mint_dev_token(self.dev_secret, role, **kw)  # type: ignore[arg-type]

    def start(
        self, timeout: float = 20, env: dict[str, str] | None = None, wait_ready: bool = True
    ) -> None:
        self.write_config()
        if self._notify is None:
            self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._notify.bind(str(self.notify_path))
        self.notifications.clear()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CODEQD_")}
        environ.update(
            {
                "PYTHONPATH": str(REPO),
                "NOTIFY_SOCKET": str(self.notify_path),
                "CODEQD_LOG__FORMAT": "json",
                **(env or {}),
            }
        )
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codeqd", "run", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environ,
            cwd=self.workdir,
        )
        log.close()
        if wait_ready and not self.wait_notification("READY=1", timeout):
            code = self.proc.poll()
            self.stop(kill=True)
            pytest.fail(f"codeqd did not become ready (exit {code}):\n{self.log()[-3000:]}")

    def wait_notification(self, what: str, timeout: float) -> bool:
        """Block (fixture code, outside trio) until a notify message contains ``what``."""
        assert self._notify is not None
        deadline = time.monotonic() + timeout
        while not any(what in n for n in self.notifications):
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc is None or self.proc.poll() is not None):
                self._drain()
                return any(what in n for n in self.notifications)
            self._notify.settimeout(min(left, 0.5))
            try:
                self.notifications.append(self._notify.recv(4096).decode())
            except TimeoutError:
                continue
        return True

    def _drain(self) -> None:
        assert self._notify is not None
        self._notify.setblocking(False)
        try:
            while True:
                self.notifications.append(self._notify.recv(4096).decode())
        except BlockingIOError:
            pass

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, kill: bool = False, timeout: float = 30) -> int | None:
        """SIGTERM (or SIGKILL) and reap; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def close(self) -> None:
        self.stop(kill=True)
        if self._notify is not None:
            self._notify.close()
            self._notify = None
        pidfile = self.state_dir / "store" / "redis.pid"
        try:  # a store orphaned by a test's kill -9 must not outlive the test
            pid = int(pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"redis" in cmdline or b"kvrocks" in cmdline:
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, event: str, timeout: float) -> bool:
        """Block (fixture code, outside trio) until the log has ``"event": "<event>"``."""
        deadline = time.monotonic() + timeout
        while f'"event":"{event}"' not in self.log():
            if time.monotonic() > deadline or (
                self.proc is not None and self.proc.poll() is not None
            ):
                return False
            time.sleep(0.02)  # polling a child's log file for an observable state
        return True


def daemons(
    tmp_path_factory: pytest.TempPathFactory, base: dict[str, Any] | None = None
) -> Iterator[Any]:
    """The body of a ``daemon_factory`` fixture: ``make(config_dict)`` → a started
    Daemon whose config is ``base`` merged with ``config_dict``; all closed after."""
    made: list[Daemon] = []

    def make(config: dict[str, Any] | None = None, start: bool = True) -> Daemon:
        d = Daemon(tmp_path_factory.mktemp("codeqd"), merge(base or {}, config or {}))
        made.append(d)
        if start:
            d.start()
        return d

    yield make
    for d in made:
        d.close()


@pytest.fixture
def daemon_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``daemon_factory(config_dict)`` → a started Daemon; all stopped at teardown."""
    yield from daemons(tmp_path_factory)


@pytest.fixture
def daemon(daemon_factory: Any) -> Daemon:
    """A started daemon with the embedded store and dev auth."""
    return daemon_factory()  # type: ignore[no-any-return]
