"""The ingress: the HTTP API, served by hypercorn's trio worker.

With ``processes = 1`` it serves in this process. With N > 1 (or ``"auto"``, the
default: one per usable CPU, at most ``AUTO_MAX``) this actor binds the listening
sockets itself (one per child, see ``_listen``) and runs N child processes
(``codeqd.actors._ingress_child``) that inherit them and serve on them; each child
has its own store pool and wake-up listener, so a long-poll in one child is woken by a
create handled in another (store pub/sub).
A child that dies is restarted; on shutdown every child gets SIGTERM and drains.
Started reports the bound addresses.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import structlog
import trio

import codeqd
from codeqd import metrics
from codeqd.actors._child import spawn, terminate, wait_exit
from codeqd.config import IngressConfig
from codeqd.context import Context
from codeqd.http import serve
from codeqd.live import Live

log = structlog.get_logger("codeqd.ingress")


#: ``processes = "auto"`` serves from this many processes at most: past it the store
#: (one script at a time) is the limit, and each process holds its own store pool,
#: wake-up connection and ~80 MiB.
AUTO_MAX = 8


def usable_cpus(
    proc_cgroup: Path = Path("/proc/self/cgroup"), cgroup_root: Path = Path("/sys/fs/cgroup")
) -> int:
    """The CPUs this process may use: its affinity, lowered by a cgroup v2 CPU quota
    (a container's limit, systemd's ``CPUQuota=``) rounded up."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return max(1, n)
    groups = [line[3:].strip() for line in lines if line.startswith("0::")]
    if not groups:
        return max(1, n)
    path = cgroup_root / groups[0].lstrip("/")
    while True:  # the tightest quota on the way up to the root
        try:
            quota, period = (path / "cpu.max").read_text().split()[:2]
            if quota != "max":
                n = min(n, -(-int(quota) // int(period)))
        except (OSError, ValueError, ZeroDivisionError):
            pass
        if path == cgroup_root or cgroup_root not in path.parents:
            break
        path = path.parent
    return max(1, n)


def process_count(cfg: IngressConfig) -> int:
    if cfg.processes == "auto":
        return min(usable_cpus(), AUTO_MAX)
    return int(cfg.processes)


async def run(
    ctx: Context,
    live: Live[IngressConfig],
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    cfg = live.value
    if not cfg.enabled:
        task_status.started([])
        return
    if process_count(cfg) == 1:
        await serve(ctx, task_status=task_status)
    else:
        await _run_children(ctx, cfg, process_count(cfg), task_status)


def _listen(bind: str, backlog: int, count: int = 1) -> tuple[list[socket.socket], str]:
    """The listening sockets for ``count`` processes, and the address they serve.

    TCP: one socket per process, all bound to the same address with ``SO_REUSEPORT``,
    so that the kernel spreads new connections evenly over the processes. With one
    shared socket the process that wakes first takes a whole burst of connections (a
    client pool opening 32 keep-alive connections at once could all land in one process
    while the other idled). A socket outlives its process's restarts here, so
    connections sent to it meanwhile wait in its backlog, none refused.
    A unix socket: one, shared (``SO_REUSEPORT`` does not apply)."""
    if bind.startswith("unix:"):
        path = bind[len("unix:") :]
        Path(path).unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(backlog)
        sock.set_inheritable(True)
        return [sock], f"unix:{path}"
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if count > 1:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # Port 0: the first socket's port, for the others too.
            sock.bind((host, socks[0].getsockname()[1] if len(socks) > 1 else int(port)))
            sock.listen(backlog)
            sock.set_inheritable(True)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return socks, f"http://{shown}:{socks[0].getsockname()[1]}"


async def _run_children(
    ctx: Context, cfg: IngressConfig, count: int, task_status: trio.TaskStatus[list[str]]
) -> None:
    socks, address = _listen(cfg.bind, cfg.backlog, count)
    with contextlib.ExitStack() as held:
        for sock in socks:
            held.enter_context(sock)
        async with trio.open_nursery() as nursery:
            for i in range(count):
                await nursery.start(_child, ctx, i, socks[i % len(socks)].fileno())
            log.info("ingress.children_ready", processes=count, address=address)
            task_status.started([address])


async def _child(ctx: Context, index: int, fd: int, *, task_status: trio.TaskStatus[None]) -> None:
    """Run one ingress child, restarting it when it dies; give up (raise, so the
    supervisor decides) when it dies before ever becoming ready twice in a row."""
    grace = float(ctx.config.shutdown.grace_seconds) + 2
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    root = str(Path(codeqd.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    started = False
    failures = 0
    while not ctx.shutting_down.is_set():
        ready_r, ready_w = os.pipe()
        args = [
            sys.executable,
            "-m",
            "codeqd.actors._ingress_child",
            "--fd",
            str(fd),
            "--ready-fd",
            str(ready_w),
            "--store-url",
            ctx.store.url,
            "--index",
            str(index),
        ]
        if ctx.config.source:
            args += ["--config", ctx.config.source]
        proc = spawn(args, env=env, pass_fds=[fd, ready_w], stdout=None)
        os.close(ready_w)
        try:
            with trio.move_on_after(float(ctx.actor_config("store").start_timeout)):
                ready = await _read_ready(ready_r)
        finally:
            os.close(ready_r)
        if ready:
            failures = 0
            log.info("ingress.child_started", index=index, pid=proc.pid)
            if not started:
                started = True
                task_status.started()
        else:
            await terminate(proc, grace, f"ingress-{index}", ctx.forced)
        try:
            async with trio.open_nursery() as watch:

                async def stop_on_shutdown(child: subprocess.Popen[bytes]) -> None:
                    await ctx.shutting_down.wait()
                    await terminate(child, grace, f"ingress-{index}", ctx.forced)

                watch.start_soon(stop_on_shutdown, proc)
                code = await wait_exit(proc)
                watch.cancel_scope.cancel()
        finally:
            await terminate(proc, grace, f"ingress-{index}", ctx.forced)
        metrics.process_exited(proc.pid)
        if ctx.shutting_down.is_set():
            return
        failures += 0 if ready else 1
        log.error("ingress.child_exited", index=index, pid=proc.pid, code=code, ready=ready)
        if failures >= 2:
            raise RuntimeError(f"ingress child {index} exited with {code} before serving, twice")
        await trio.sleep(min(0.2 * 2**failures, 5))


async def _read_ready(fd: int) -> bool:
    """The child writes one byte once it listens; EOF first means it died."""
    os.set_blocking(fd, False)
    while True:
        await trio.lowlevel.wait_readable(fd)
        try:
            return os.read(fd, 1) == b"1"
        except BlockingIOError:
            continue
