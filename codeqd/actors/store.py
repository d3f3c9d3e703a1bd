"""The store actor: runs the embedded store child, or watches an external store.

Embedded: ``redis-server`` (``store.server_bin``) with its data, AOF, pidfile
and log under ``<state_dir>/store``, listening on a unix socket there (or a
loopback port when the path is too long for a socket). A ``server_bin`` whose
file name contains ``kvrocks`` is KVRocks instead: it gets a config file of its
own (``<state_dir>/store/kvrocks.conf``: a loopback port, since KVRocks refuses
port 0; data in ``store/kvrocks``, logs in ``store``, ``resp3-enabled yes``,
``rocksdb.write_options.sync`` from ``appendfsync``: ``always`` → ``yes``). The child is spawned
with ``PR_SET_PDEATHSIG`` (see ``_child``) so a ``kill -9`` of codeqd takes
it down too; a child left over anyway (found through its pidfile) is stopped
cleanly before a new one starts. If the child dies it is restarted on the same
address. On shutdown it gets SIGTERM (a clean AOF flush) and is reaped.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import structlog
import trio

from codeqd.actors._child import spawn, terminate, wait_exit
from codeqd.config import Config, ConfigError, StoreActorConfig
from codeqd.context import Context
from codeqd.live import Live

log = structlog.get_logger("codeqd.store")

_MAX_UNIX_PATH = 100


def store_dir(config: Config) -> Path:
    return (config.state_path / "store").absolute()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_kvrocks(config: Config) -> bool:
    """Whether the embedded store is KVRocks (by ``server_bin``'s file name)."""
    return "kvrocks" in Path(config.store.server_bin).name.lower()


def embedded_url(config: Config) -> str:
    """The address the embedded store will listen on; stable for the daemon's life."""
    if is_kvrocks(config):
        return f"redis://127.0.0.1:{_free_port()}"
    sock = store_dir(config) / "redis.sock"
    if len(str(sock)) <= _MAX_UNIX_PATH:
        return f"unix://{sock}"
    return f"redis://127.0.0.1:{_free_port()}"


def store_url(config: Config) -> str:
    return config.store.url if config.store.mode == "external" else embedded_url(config)


def kvrocks_conf(config: Config, url: str) -> str:
    """The embedded KVRocks' config file."""
    d = store_dir(config)
    opts = {
        "bind": "127.0.0.1",
        "port": url.rsplit(":", 1)[1],
        "dir": str(d / "kvrocks"),
        "log-dir": str(d),
        "pidfile": str(d / "redis.pid"),
        "daemonize": "no",
        "resp3-enabled": "yes",
        # appendfsync always: fsync the WAL before each write is acknowledged (durable
        # on power loss); otherwise the WAL is written but not synced (a crash of the
        # process loses nothing, a power loss may lose the last writes).
        "rocksdb.write_options.sync": "yes" if config.store.appendfsync == "always" else "no",
    }
    return "".join(f"{k} {v}\n" for k, v in opts.items())


def _server_args(config: Config, url: str) -> list[str]:
    d = store_dir(config)
    if is_kvrocks(config):
        (d / "kvrocks").mkdir(exist_ok=True, mode=0o700)
        conf = d / "kvrocks.conf"
        conf.write_text(kvrocks_conf(config, url))
        return [config.store.server_bin, "-c", str(conf)]
    args = [
        config.store.server_bin,
        "--dir",
        str(d),
        "--daemonize",
        "no",
        "--appendonly",
        "yes",
        "--appendfsync",
        config.store.appendfsync,
        "--save",
        "",
        "--pidfile",
        str(d / "redis.pid"),
        "--logfile",
        str(d / "redis.log"),
        "--loglevel",
        "notice",
        "--databases",
        "1",
    ]
    if url.startswith("unix://"):
        args += ["--port", "0", "--unixsocket", url[len("unix://") :], "--unixsocketperm", "700"]
    else:
        args += ["--port", url.rsplit(":", 1)[1], "--bind", "127.0.0.1", "--protected-mode", "yes"]
    return args


def _log_path(config: Config) -> Path:
    d = store_dir(config)
    return d / "kvrocks.INFO" if is_kvrocks(config) else d / "redis.log"


def _alive_store_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"redis" in cmdline or b"kvrocks" in cmdline else None


async def _stop_leftover(config: Config) -> None:
    """A child of an earlier codeqd still holding the data dir: stop it cleanly."""
    pid = _alive_store_pid(store_dir(config) / "redis.pid")
    if pid is None:
        return
    log.warning("store.leftover_found", pid=pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with trio.move_on_after(15):
        while _alive_store_pid(store_dir(config) / "redis.pid") == pid:
            await trio.sleep(0.05)  # not our child: no pidfd to wait on
        return
    os.kill(pid, signal.SIGKILL)


async def run(
    ctx: Context,
    live: Live[StoreActorConfig],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Report started once the store answers PING; run until cancelled.

    Cancellation stops the embedded child cleanly (shielded, bounded by
    ``start_timeout``) before this returns.
    """
    if ctx.config.store.mode == "external":
        await _watch_external(ctx, live, task_status)
        return
    config = ctx.config
    store_dir(config).mkdir(parents=True, exist_ok=True, mode=0o700)
    await _stop_leftover(config)
    started = False
    delay = 0.2
    while True:
        proc = spawn(_server_args(config, ctx.store.url))
        log.info(
            "store.started", pid=proc.pid, url=ctx.store.url, appendfsync=config.store.appendfsync
        )
        try:
            with trio.move_on_after(float(live.value.start_timeout)) as waiting:
                while not await ctx.store.ping():
                    if proc.poll() is not None:
                        break
                    await trio.sleep(0.05)
            if proc.poll() is None and not waiting.cancelled_caught:
                if not started:
                    await _refuse_unsupported(ctx)
                    task_status.started()
                    started = True
                delay = 0.2
                code: int | None = await wait_exit(proc)
            else:
                code = proc.poll()
            log.error(
                "store.exited",
                pid=proc.pid,
                code=code,
                log=str(_log_path(config)),
                restart_in=delay,
            )
        finally:
            await terminate(proc, float(live.value.start_timeout), "store", ctx.forced)
        if not started:
            what = "did not answer in time" if code is None else f"exited with {code}"
            raise RuntimeError(
                f"embedded store {config.store.server_bin!r} {what}; see {_log_path(config)}"
            )
        await trio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def _watch_external(
    ctx: Context, live: Live[StoreActorConfig], task_status: trio.TaskStatus[None]
) -> None:
    """External store: started once it answers; afterwards log outages and recoveries."""
    log.info("store.connecting", url=_redact(ctx.store.url), mode="external")
    with trio.fail_after(float(live.value.start_timeout)):
        while not await ctx.store.ping():
            await _refuse_unsupported(ctx)
            await trio.sleep(0.2)
    await _refuse_unsupported(ctx)
    task_status.started()
    up = True
    while True:
        await trio.sleep(float(live.value.interval))
        ok = await ctx.store.ping()
        if ok != up:
            (log.info if ok else log.error)(
                "store.up" if ok else "store.down", url=_redact(ctx.store.url)
            )
            up = ok


async def _refuse_unsupported(ctx: Context) -> None:
    """A store that answers but cannot work (KVRocks with resp3-enabled no, Redis older
    than 6.2): ``ConfigError`` with what to change, so the daemon exits with one message
    instead of retrying forever."""
    problem = await ctx.store.server_refusal()
    if problem is not None:
        raise ConfigError(f"store {_redact(ctx.store.url)}: {problem}")
    log.info("store.server", server=ctx.store.server, url=_redact(ctx.store.url))


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
