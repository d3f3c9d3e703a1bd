"""SIGHUP: new actor tunables apply live; an invalid file is refused and the old one stays."""

from __future__ import annotations

import signal
from typing import Any

import httpx
import trio

from tests.conftest import Daemon
from tests.e2e.conftest import Client


async def _log_has(d: Daemon, text: str) -> None:
    with trio.fail_after(10):
        while text not in d.log():
            await trio.sleep(0.05)  # polls the daemon's log file: no event to await


async def test_sighup_applies_new_promoter_interval(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory({"actors": {"promoter": {"interval": "1h"}}})
    async with httpx.AsyncClient(timeout=40) as http:
        c = Client(d, http)
        await _log_has(d, '"supervisor.ready"')
        task = await c.create("tick", {}, delaySeconds=1)
        # With an hourly promoter the due task would wait; the reload wakes it.
        d.write_config({"actors": {"promoter": {"interval": "100ms"}}})
        d.signal(signal.SIGHUP)
        await _log_has(d, '"config.reloaded"')
        with trio.fail_after(10):
            r = await c.claim(commands=["tick"], waitSeconds=8)
        assert r.status_code == 200 and r.json()["id"] == task["id"]


async def test_sighup_refuses_an_invalid_config(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory()
    async with httpx.AsyncClient(timeout=40) as http:
        c = Client(d, http)
        d.config_path.write_text('[actors.reaper]\nbatch = "lots"\n')
        d.signal(signal.SIGHUP)
        await _log_has(d, '"config.reload_refused"')
        assert "actors.reaper.batch: expected an integer" in d.log()
        await c.create("still", {})
        assert (await c.claim(commands=["still"])).status_code == 200


async def test_sighup_names_keys_that_need_a_restart(daemon_factory: Any) -> None:
    d: Daemon = daemon_factory()
    d.write_config({"limits": {"batch_max": 10}, "actors": {"reaper": {"batch": 7}}})
    d.signal(signal.SIGHUP)
    await _log_has(d, '"config.restart_required"')
    line = next(ln for ln in d.log().splitlines() if "config.restart_required" in ln)
    assert "limits.batch_max" in line and "actors.reaper.batch" not in line
