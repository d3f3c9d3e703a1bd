"""Every URL field, property-based, against the real daemon: a ``webhook`` or a
``callbackUrl`` is either refused at the door (400 naming the field) or accepted and
then delivered or failed — and no actor ever crashes (``codeq_actor_restarts_total``
stays 0, the process lives). Examples are bounded so the file runs in seconds."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Daemon

PROPERTY = settings(
    max_examples=50, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)

hosts = st.one_of(
    st.sampled_from(
        [
            "\u2603.example",  # IDNA-invalid: httpx.InvalidURL at send time
            "xn--n3h.example",
            "b\u00fccher.example",  # valid IDNA
            "\u4f8b\u3048.\u30c6\u30b9\u30c8",
            "ex\u200bample.com",
            "127.0.0.1",
            "localhost",
            "[::1]",
            "[zz]",
            "a..b",
            "%41.example",
            "user:pw@example.invalid",
        ]
    ),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=24),
    st.from_regex(r"[a-z0-9-]{1,70}(\.[a-z0-9-]{1,70}){0,3}", fullmatch=True),
    st.integers(60, 400).map(lambda n: "h" * n + ".invalid"),
)
ports = st.one_of(
    st.just(""),
    st.integers(-1, 70_000).map(lambda p: f":{p}"),
    st.sampled_from([":", ":0", ":65535", ":08080", ": 80"]),
)
urls = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
    st.sampled_from(["http", "https", "HTTP", "ftp", "http:/"]),
    hosts,
    ports,
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
)


class Live:
    def __init__(self, daemon: Daemon, http: httpx.Client) -> None:
        self.d = daemon
        self.http = http
        self.producer = daemon.token("producer", sub="prop-p")
        self.worker = daemon.token("worker", sub="prop-w")

    def call(self, method: str, path: str, token: str, body: Any = None) -> httpx.Response:
        return self.http.request(
            method,
            f"/v1/codeq{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )

    def metric(self, name: str, **labels: str) -> float:
        text = self.http.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
            if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
                total += float(m.group(2))
        return total

    def healthy(self) -> None:
        assert self.d.proc is not None and self.d.proc.poll() is None
        assert self.metric("codeq_actor_restarts_total") == 0, self.d.log()[-3000:]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    d = Daemon(
        Path(tmp_path_factory.mktemp("urls")),
        {
            "webhooks": {"hmac_secret": "prop"},  # deny_private_networks: the default
            "actors": {
                "dispatcher": {"timeout": "1s", "max_attempts": 1, "interval": "100ms"},
                "notifier": {"timeout": "1s", "dedup_window": 0},
            },
        },
    )
    d.start()
    try:
        with httpx.Client(base_url=d.base, timeout=30) as http:
            yield Live(d, http)
    finally:
        d.close()


def refused_at_the_door(r: httpx.Response, field: str) -> bool:
    if r.status_code != 400:
        return False
    doc = r.json()
    assert doc["code"] == "validation_error" and doc["details"]["field"] == field, doc
    return True


def wait(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not settled in time"
        time.sleep(0.01)  # polling the daemon's observable state from a sync test


@PROPERTY
@given(url=urls)
def test_every_webhook_is_refused_or_delivered_or_failed(live: Live, url: str) -> None:
    r = live.call(
        "POST", "/tasks", live.producer, {"command": "prop", "payload": {}, "webhook": url}
    )
    if not refused_at_the_door(r, "webhook"):
        assert r.status_code == 202, r.text
        task_id = r.json()["id"]
        claimed = live.call("POST", "/tasks/claim", live.worker, {"commands": ["prop"]}).json()
        assert claimed["id"] == task_id
        done = live.call(
            "POST",
            f"/tasks/{task_id}/result",
            live.worker,
            {"status": "COMPLETED", "result": {}, "leaseId": claimed["leaseId"]},
        )
        assert done.status_code == 200, done.text

        def settled() -> bool:
            t = live.call("GET", f"/tasks/{task_id}", live.producer).json()
            return t.get("webhookStatus") in ("DELIVERED", "FAILED")

        wait(settled)
    live.healthy()


@PROPERTY
@given(url=urls)
def test_every_callback_url_is_refused_or_notified_or_failed(live: Live, url: str) -> None:
    r = live.call(
        "POST",
        "/workers/subscriptions",
        live.worker,
        {"callbackUrl": url, "eventTypes": ["propn"], "minIntervalSeconds": 0},
    )
    if not refused_at_the_door(r, "callbackUrl"):
        assert r.status_code == 200, r.text
        sub_id = r.json()["subscriptionId"]

        def outcomes() -> float:
            return sum(
                live.metric("codeq_webhook_deliveries_total", command="propn", outcome=o)
                for o in ("success", "failure")
            )

        before = outcomes()
        created = live.call("POST", "/tasks", live.producer, {"command": "propn", "payload": {}})
        assert created.status_code == 202
        wait(lambda: outcomes() > before)
        assert (
            live.call("POST", "/tasks/claim", live.worker, {"commands": ["propn"]}).status_code
            == 200
        )
        assert (
            live.call("DELETE", f"/workers/subscriptions/{sub_id}", live.worker).status_code == 204
        )
    live.healthy()
