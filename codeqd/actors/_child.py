"""Child processes owned by an actor: spawned so they die with us, awaited without threads.

``spawn`` runs ``subprocess.Popen`` on the calling (main trio) thread on
purpose: ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child
exits, and trio's ``run_process`` forks from a worker thread that may retire
while the child runs. ``wait_exit`` waits on a pidfd, so no thread blocks in
``waitpid`` either.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

import structlog
import trio

log = structlog.get_logger("codeqd.child")

_PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    stdout: int | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own session, with SIGTERM as its parent-death signal."""
    return subprocess.Popen(
        list(args),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        env=env,
        pass_fds=tuple(pass_fds),
        preexec_fn=_set_pdeathsig,
        start_new_session=True,
    )


async def wait_exit(proc: subprocess.Popen[bytes]) -> int:
    """Wait until the child exits and reap it; cancellable (the child keeps running)."""
    fd = os.pidfd_open(proc.pid)
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)
    return proc.wait()


async def terminate(
    proc: subprocess.Popen[bytes], grace: float, name: str, forced: trio.Event | None = None
) -> None:
    """SIGTERM, up to ``grace`` seconds for a clean exit (cut short when ``forced``
    is set: a second stop signal), then SIGKILL; always reaps.

    Shielded: a cancelled caller still leaves no child behind.
    """
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    with trio.CancelScope(shield=True):
        with trio.move_on_after(grace) as waiting:
            async with trio.open_nursery() as nursery:
                if forced is not None:
                    nursery.start_soon(_cancel_when_set, forced, waiting)
                await wait_exit(proc)
                nursery.cancel_scope.cancel()
            return
        reason = "stop forced" if forced is not None and forced.is_set() else f"alive {grace}s"
        log.error("child.killed", child=name, pid=proc.pid, reason=f"{reason} after SIGTERM")
        proc.kill()
        await wait_exit(proc)


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
