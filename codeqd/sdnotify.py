"""systemd's notify protocol: one datagram to ``$NOTIFY_SOCKET``; a no-op elsewhere."""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send ``message`` (``READY=1``, ``STATUS=...``); False when not under systemd.

    Never raises and never blocks: systemd not listening must not stop the daemon.
    """
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(message.encode(), addr)
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Half of systemd's ``WatchdogSec`` when it is set for this process, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None
