"""The SPEC's defaults, asserted against a daemon started with the default config (only
the state dir, port, dev secret and grace are set by the fixture): what HTTP shows
(maxAttempts, lease and heartbeat lengths), and ``codeqd check-config`` on the same
config file for what HTTP cannot show in a test's time (retention, idempotency TTL,
retry backoff, the dispatcher's webhook retries)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from tests.conftest import REPO, Daemon
from tests.e2e.conftest import Client

#: The daemon's "now" lies between the test's before and after readings of the same host
#: clock; this only absorbs millisecond truncation, and stays below 1 s so that a default
#: off by one second fails.
SLACK = 0.5


def _at(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _now() -> float:
    return datetime.now(UTC).timestamp()


async def test_http_defaults_max_attempts_lease_and_heartbeat(client: Client) -> None:
    created = await client.create("defaults", {})
    assert created["maxAttempts"] == 5
    assert (await client.get(created["id"]))["maxAttempts"] == 5

    before = _now()
    r = await client.claim(commands=["defaults"])  # no leaseSeconds
    after = _now()
    assert r.status_code == 200, r.text
    task = r.json()
    assert task["id"] == created["id"] and task["maxAttempts"] == 5
    assert before + 300 - SLACK <= _at(task["leaseUntil"]) <= after + 300 + SLACK

    # Move the lease away from the default first, so the heartbeat's effect is visible.
    r = await client.call(
        "POST",
        f"/tasks/{task['id']}/heartbeat",
        client.worker,
        {"leaseId": task["leaseId"], "extendSeconds": 30},
    )
    assert r.status_code == 200, r.text
    assert _at(r.json()["leaseUntil"]) <= _now() + 30 + SLACK
    before = _now()
    r = await client.call(
        "POST", f"/tasks/{task['id']}/heartbeat", client.worker, {"leaseId": task["leaseId"]}
    )
    after = _now()
    assert r.status_code == 200, r.text
    assert before + 300 - SLACK <= _at(r.json()["leaseUntil"]) <= after + 300 + SLACK


def test_check_config_shows_the_spec_defaults(daemon: Daemon) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEQD_")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run(
        [sys.executable, "-m", "codeqd", "check-config", "--config", str(daemon.config_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    cfg: dict[str, Any] = json.loads(out.stdout)
    # Key by key: other keys may join these sections without changing these defaults.
    tasks, backoff, dispatcher = cfg["tasks"], cfg["backoff"], cfg["actors"]["dispatcher"]
    assert (tasks["default_max_attempts"], tasks["default_lease_seconds"]) == (5, 300)
    assert (tasks["retention"], tasks["idempotency_ttl"]) == (86400.0, 86400.0)
    assert (backoff["policy"], backoff["base"], backoff["max"]) == ("exp_full_jitter", 5.0, 900.0)
    assert backoff["commands"] == {}
    assert (dispatcher["max_attempts"], dispatcher["base_backoff"], dispatcher["max_backoff"]) == (
        5,
        2.0,
        60.0,
    )
