"""Stopping the real daemon: within the grace from any state, start-up included, and
at once on a second signal (issue 13, item 7)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.conftest import Daemon, free_port

GRACE = 3
MARGIN = 3  # process start-up noise on a loaded 2-core machine, not part of the contract


def _unreachable_store(daemon_factory: Any) -> Daemon:
    d: Daemon = daemon_factory(
        {
            "store": {"mode": "external", "url": f"redis://127.0.0.1:{free_port()}/0"},
            "shutdown": {"grace_seconds": GRACE},
            # Longer than the test: the store actor is still waiting when the signal comes.
            "actors": {"store": {"start_timeout": "60s"}},
        },
        start=False,
    )
    d.start(wait_ready=False)
    assert d.wait_log("store.connecting", 20), d.log()[-2000:]
    return d


def _wait(d: Daemon, timeout: float) -> tuple[int, float]:
    assert d.proc is not None
    t0 = time.monotonic()
    try:
        code = d.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {timeout:g}s after the signal:\n{d.log()[-3000:]}")
    return code, time.monotonic() - t0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_during_start_up_with_an_unreachable_store_is_clean(
    daemon_factory: Any, signum: int
) -> None:
    d = _unreachable_store(daemon_factory)
    d.signal(signum)
    code, _ = _wait(d, GRACE + MARGIN)
    assert code == 0, d.log()[-3000:]
    assert '"during_start":true' in d.log()
    assert '"event":"supervisor.stopped"' in d.log()
    assert "READY=1" not in "".join(d.notifications)


@contextmanager
def _request_in_flight(d: Daemon) -> Iterator[socket.socket]:
    """A POST whose head hypercorn has parsed (it answered ``100 Continue``) and whose
    body never comes: the connection is busy, so the drain waits for it."""
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/codeq/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\nExpect: 100-continue\r\n"
            b"Authorization: Bearer " + d.token("producer").encode() + b"\r\n\r\n"
        )
        assert s.recv(64).startswith(b"HTTP/1.1 100")
        yield s


def _held_daemon(daemon_factory: Any, grace: float) -> Daemon:
    return daemon_factory(  # type: ignore[no-any-return]
        {
            "shutdown": {"grace_seconds": grace},
            "actors": {"ingress": {"request_timeout": "120s"}},
        }
    )


def test_a_stuck_request_does_not_hold_the_stop_past_the_grace(daemon_factory: Any) -> None:
    d = _held_daemon(daemon_factory, GRACE)
    with _request_in_flight(d):
        d.signal(signal.SIGTERM)
        code, took = _wait(d, GRACE + MARGIN)
    assert code == 0, d.log()[-3000:]
    assert took >= GRACE - 0.5, "the in-flight request was not waited for"


def test_a_second_signal_forces_the_stop(daemon_factory: Any) -> None:
    d = _held_daemon(daemon_factory, 60)
    with _request_in_flight(d):
        d.signal(signal.SIGTERM)
        assert d.wait_notification("STOPPING=1", 10)
        assert d.proc is not None and d.proc.poll() is None  # draining: the request holds it
        d.signal(signal.SIGINT)
        code, _ = _wait(d, MARGIN)
    assert code == 128 + signal.SIGINT, d.log()[-3000:]
    assert "supervisor.forced_stop" in d.log()


def test_a_second_signal_during_start_up_is_harmless(daemon_factory: Any) -> None:
    d = _unreachable_store(daemon_factory)
    d.signal(signal.SIGTERM)
    d.signal(signal.SIGTERM)
    code, _ = _wait(d, GRACE + MARGIN)
    assert code in (0, 128 + signal.SIGTERM), d.log()[-3000:]
