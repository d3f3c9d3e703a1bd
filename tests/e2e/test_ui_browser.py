"""The dashboard in a real browser: Debian's chromium driven by Playwright's Python API
against the real daemon. Log in, counts equal to the admin API, pause/resume, a task's
page and timeline, DLQ replay and purge checked in the store, axe-core on the main pages;
the README's screenshot is taken here."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Daemon

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        "chromium is not installed: `make install` installs it (apt), the browser tests skip",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

HERE = Path(__file__).resolve().parent
AXE = HERE / "vendor" / "axe-core" / "axe.min.js"
# The README's screenshot: refreshed only when asked (CODEQD_UPDATE_SCREENSHOT=1), so
# that a test run leaves the checkout as it found it.
SCREENSHOT = HERE.parents[1] / "docs" / "dashboard.png"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        yield b
        b.close()


class Api:
    """Blocking calls to the daemon's HTTP API (the test itself is not in a trio run)."""

    def __init__(self, daemon: Daemon) -> None:
        self.http = httpx.Client(base_url=f"{daemon.base}/v1/codeq", timeout=20)
        self.producer = daemon.token("producer", sub="prod-1")
        self.worker = daemon.token("worker", sub="worker-1")
        self.admin = daemon.token("admin", sub="ops")

    def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        r = self.http.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code < 300, r.text
        return r.json() if r.status_code != 204 else None


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    csp_errors: list[str] = []
    pg.on(
        "console",
        lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    yield pg
    context.close()
    assert not csp_errors, csp_errors  # our own script and styles obey our CSP


def _login(page: Page, base: str, token: str) -> None:
    page.goto(f"{base}/ui/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Log in").click()


def _axe(page: Page) -> list[dict[str, Any]]:
    """Serious or critical axe-core violations of the page. The script is evaluated
    through the DevTools protocol, which the page's CSP does not govern."""
    page.evaluate(AXE.read_text())
    results = page.evaluate("async () => JSON.stringify(await axe.run(document))")
    return [
        {"id": v["id"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in json.loads(results)["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_operator_flow_in_a_browser(daemon: Daemon, page: Page, tmp_path: Path) -> None:
    api = Api(daemon)
    for i in range(3):
        api.call("POST", "/tasks", api.producer, {"command": "email", "payload": {"n": i}})
    api.call(
        "POST", "/tasks", api.producer, {"command": "resize", "payload": {}, "delaySeconds": 600}
    )
    t = api.call(
        "POST",
        "/tasks",
        api.producer,
        {"command": "email", "payload": {"to": "ops@x"}, "maxAttempts": 2},
    )
    # claim → nack → claim → result: the task page's timeline shows the last claim and result.
    claimed = api.call("POST", "/tasks/claim", api.worker, {"commands": ["email"]})
    while claimed["id"] != t["id"]:  # the FIFO puts it last; requeue the others unharmed
        api.call("POST", f"/tasks/{claimed['id']}/abandon", api.worker)
        claimed = api.call("POST", "/tasks/claim", api.worker, {"commands": ["email"]})
    assert claimed["id"] == t["id"]
    dead = []
    for i in range(3):
        d = api.call(
            "POST",
            "/tasks",
            api.producer,
            {"command": "report", "payload": {"i": i}, "maxAttempts": 1},
        )
        c = api.call("POST", "/tasks/claim", api.worker, {"commands": ["report"]})
        assert c["id"] == d["id"]
        api.call("POST", f"/tasks/{d['id']}/nack", api.worker, {"reason": "bad input"})
        dead.append(d["id"])

    # Wrong tokens are refused at the login page.
    _login(page, daemon.base, api.producer)
    expect(page.get_by_role("alert")).to_contain_text("not an admin token")
    _login(page, daemon.base, "nonsense")
    expect(page.get_by_role("alert")).to_be_visible()
    assert not _axe(page), "login"

    _login(page, daemon.base, api.admin)
    expect(page.get_by_role("heading", name="Queues")).to_be_visible()
    # The rates chart (uPlot, under the page's CSP: the fixture fails on a CSP report)
    # and its caption, the last hour's totals: 8 created, 3 of them dead-lettered.
    expect(page.locator("figure.rates [data-chart] canvas")).to_be_visible()
    expect(page.locator("figure.rates .uplot .u-legend")).to_contain_text("Dead-lettered")
    expect(page.locator("[data-rates-caption]")).to_have_text(
        "Last hour: 8 created, 0 completed, 0 failed, 3 dead-lettered."
    )
    assert not _axe(page), "overview"
    listed = api.call("GET", "/admin/queues", api.admin)
    for q in listed:
        row = page.locator(f'tr[data-command="{q["command"]}"]')
        for key in ("ready", "delayed", "inProgress", "dlq"):
            expect(row.locator(f'[data-count="{key}"]')).to_have_text(str(q[key]))
    refresh = os.environ.get("CODEQD_UPDATE_SCREENSHOT") == "1"
    page.screenshot(path=str(SCREENSHOT if refresh else tmp_path / "dashboard.png"))

    # Pause and resume from the queue page; the store says so.
    page.get_by_role("link", name="email").click()
    expect(page.get_by_role("heading", name="Queue email")).to_be_visible()
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_contain_text("Queue paused")
    assert api.call("GET", "/admin/queues/email", api.admin)["paused"] is True
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_contain_text("Queue resumed")
    assert api.call("GET", "/admin/queues/email", api.admin)["paused"] is False

    # The task page, reached from the search box, after nack → claim → result.
    api.call(
        "POST", f"/tasks/{t['id']}/nack", api.worker, {"reason": "smtp down", "delaySeconds": 0}
    )
    again = api.call("POST", "/tasks/claim", api.worker, {"commands": ["email"]})
    while again["id"] != t["id"]:
        api.call("POST", f"/tasks/{again['id']}/abandon", api.worker)
        again = api.call("POST", "/tasks/claim", api.worker, {"commands": ["email"]})
    api.call(
        "POST",
        f"/tasks/{t['id']}/result",
        api.worker,
        {"status": "COMPLETED", "result": {"sent": True}, "leaseId": again.get("leaseId")},
    )
    page.get_by_label("Task id").fill(t["id"])
    page.get_by_role("button", name="Open").click()
    expect(page.locator('[data-field="status"]')).to_have_text("COMPLETED")
    expect(page.locator('[data-field="attempts"]')).to_contain_text("2 of 2")
    claims = page.locator('.timeline li[data-kind="claimed"]')
    expect(claims).to_have_count(2)
    expect(claims.last).to_contain_text("attempt 2 by worker worker-1")
    expect(page.locator('.timeline li[data-kind="nacked"]')).to_contain_text("smtp down")
    expect(page.locator('.timeline li[data-kind="result"]')).to_contain_text("COMPLETED")
    assert not _axe(page), "task"

    # DLQ: replay one selected, purge the rest after a confirmation naming two.
    page.goto(f"{daemon.base}/ui/queues/report?tenant=default")
    assert not _axe(page), "queue"
    page.get_by_label(f"Select {dead[0]}").check()
    page.get_by_role("button", name="Replay selected").click()
    expect(page.get_by_role("status")).to_contain_text("replayed")
    stats = api.call("GET", "/admin/queues/report", api.admin)
    assert (stats["ready"], stats["dlq"]) == (1, 2)
    page.get_by_role("button", name="Purge all…").click()
    expect(page.locator("[data-purge-count]")).to_have_text("2")
    page.get_by_role("button", name="Purge 2 tasks").click()
    expect(page.get_by_role("status")).to_contain_text("purged")
    assert api.call("GET", "/admin/queues/report", api.admin)["dlq"] == 0
    assert (
        api.http.get(
            f"/tasks/{dead[1]}", headers={"Authorization": f"Bearer {api.producer}"}
        ).status_code
        == 404
    )

    # Workers: no stream open here, so the page says so; checked for accessibility.
    page.get_by_role("link", name="Workers").click()
    expect(page.get_by_role("heading", name="Workers")).to_be_visible()
    expect(page.locator("table.streams")).to_contain_text("No worker stream is open.")
    assert not _axe(page), "workers"


def test_live_counts_update_without_reload(daemon: Daemon, browser: Browser) -> None:
    daemon.stop()
    daemon.write_config({"ui": {"refresh_interval": "200ms"}})
    daemon.start()
    api = Api(daemon)
    api.call("POST", "/tasks", api.producer, {"command": "live", "payload": {}})
    context = browser.new_context()
    page = context.new_page()
    try:
        _login(page, daemon.base, api.admin)
        ready = page.locator('tr[data-command="live"] [data-count="ready"]')
        expect(ready).to_have_text("1")
        api.call("POST", "/tasks", api.producer, {"command": "live", "payload": {}})
        expect(ready).to_have_text("2", timeout=5000)  # swapped in by ui.js's polling
        # The chart's data is polled too: its caption counts the new task.
        # The count is read from the server (the caption may not have polled yet, and
        # other tests' tasks of this tenant count too), then one more task must show.
        caption = page.locator("[data-rates-caption]")
        rates = page.request.get(f"{daemon.base}/ui/rates?tenant=default")
        before = rates.json()["totals"]["created"]
        api.call("POST", "/tasks", api.producer, {"command": "live", "payload": {}})
        expect(caption).to_contain_text(f"Last hour: {before + 1} created,", timeout=5000)
    finally:
        context.close()
