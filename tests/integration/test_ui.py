"""The dashboard over HTTP (SPEC §7): login, session cookie, CSRF, tenancy, and that its
buttons change the store. The browser tests are in tests/e2e/test_ui_browser.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from codeqd import config as cfgmod
from codeqd.store import RATE_SERIES
from tests.integration.conftest import Api, make_config, start_api


class Browser:
    """A cookie-keeping HTTP client for /ui, as one browser would be."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.http = httpx.AsyncClient(base_url=api.base, timeout=20)

    async def login(self, token: str) -> httpx.Response:
        return await self.http.post("/ui/login", data={"token": token})

    async def csrf(self, path: str) -> str:
        page = await self.http.get(path)
        assert page.status_code == 200, page.text
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert found, page.text
        return found.group(1)


@pytest.fixture
async def browser(api: Api) -> AsyncIterator[Browser]:
    b = Browser(api)
    yield b
    await b.http.aclose()


async def _dead_letter(api: Api, command: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        t = await api.create(command, {"i": i}, maxAttempts=1)
        assert (await api.claim(commands=[command])).json()["id"] == t["id"]
        r = await api.call("POST", f"/tasks/{t['id']}/nack", api.worker, {"reason": "boom"})
        assert r.status_code == 200, r.text
        ids.append(t["id"])
    return ids


async def test_login_sets_a_strict_httponly_cookie_and_shows_the_queues(
    api: Api, browser: Browser
) -> None:
    await api.create("email", {"to": "a"})
    assert (await browser.http.get("/ui/")).status_code == 303  # to the login page
    r = await browser.login(api.admin)
    assert r.status_code == 303 and r.headers["location"].endswith("/ui/")
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http on loopback
    assert api.admin not in cookie  # the token is never kept
    page = await browser.http.get("/ui/")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # no inline script
    row = re.search(r'<tr data-command="email">(.*?)</tr>', page.text, re.S)
    assert row and '<td data-count="ready">1</td>' in row.group(1)


@pytest.mark.parametrize("kind", ["garbage", "producer", "worker", "expired"])
async def test_login_refuses_what_is_not_a_valid_admin_token(
    api: Api, browser: Browser, kind: str
) -> None:
    token = {
        "garbage": "not-a-token",
        "producer": api.producer,
        "worker": api.worker,
        "expired": api.token("admin", ttl=-120),
    }[kind]
    r = await browser.login(token)
    assert r.status_code in (401, 403), r.text
    assert "set-cookie" not in r.headers
    assert (await browser.http.get("/ui/")).status_code == 303


async def test_a_forged_cookie_is_no_session(api: Api, browser: Browser) -> None:
    await browser.login(api.admin)
    value = browser.http.cookies["codeqd_ui"]
    browser.http.cookies.clear()
    browser.http.cookies.set("codeqd_ui", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert (await browser.http.get("/ui/")).status_code == 303


async def test_pause_and_resume_need_the_csrf_token_and_change_the_store(
    api: Api, browser: Browser
) -> None:
    await api.create("email", {})
    await browser.login(api.admin)
    csrf = await browser.csrf("/ui/queues/email?tenant=default")
    store = api.ctx.store
    for bad in ({}, {"csrf": "0" * 64}):
        r = await browser.http.post("/ui/queues/email/pause", data={"tenant": "default", **bad})
        assert r.status_code == 403 and "csrf_failed" in r.text
        assert not (await store.queue_stats("default", "email")).paused
    r = await browser.http.post("/ui/queues/email/pause", data={"tenant": "default", "csrf": csrf})
    assert r.status_code == 303
    assert (await store.queue_stats("default", "email")).paused
    assert (await api.claim(commands=["email"])).status_code == 204
    page = await browser.http.get(r.headers["location"])
    assert "Queue paused" in page.text and ">Resume</button>" in page.text
    r = await browser.http.post("/ui/queues/email/resume", data={"tenant": "default", "csrf": csrf})
    assert r.status_code == 303
    assert not (await store.queue_stats("default", "email")).paused


async def test_a_post_without_a_session_is_refused(api: Api, browser: Browser) -> None:
    await api.create("email", {})
    r = await browser.http.post("/ui/queues/email/pause", data={"tenant": "default"})
    assert r.status_code == 401
    assert not (await api.ctx.store.queue_stats("default", "email")).paused


async def test_csrf_token_of_one_login_does_not_work_for_another(
    api: Api, browser: Browser
) -> None:
    await browser.login(api.admin)
    csrf = await browser.csrf("/ui/queues/email?tenant=default")
    other = Browser(api)
    try:
        await other.login(api.token("admin", sub="admin-2"))
        r = await other.http.post(
            "/ui/queues/email/pause", data={"tenant": "default", "csrf": csrf}
        )
        assert r.status_code == 403
    finally:
        await other.http.aclose()


async def test_dlq_replay_selected_and_all_then_purge_with_a_confirmed_count(
    api: Api, browser: Browser
) -> None:
    ids = await _dead_letter(api, "dead", 5)
    store = api.ctx.store
    await browser.login(api.admin)
    page = await browser.http.get("/ui/queues/dead?tenant=default")
    assert all(i in page.text for i in ids) and "MAX_ATTEMPTS" in page.text
    csrf = await browser.csrf("/ui/queues/dead?tenant=default")
    base = {"tenant": "default", "csrf": csrf}

    r = await browser.http.post("/ui/queues/dead/dlq/replay", data={**base, "id": [ids[0]]})
    assert r.status_code == 303
    stats = await store.queue_stats("default", "dead")
    assert (stats.ready, stats.dlq) == (1, 4)

    # Purge asks first, naming the count; nothing is deleted by the question.
    r = await browser.http.post("/ui/queues/dead/dlq/confirm-purge", data={**base, "all": "1"})
    assert r.status_code == 200 and "<strong data-purge-count>4</strong>" in r.text
    assert (await store.queue_stats("default", "dead")).dlq == 4
    r = await browser.http.post("/ui/queues/dead/dlq/confirm-purge", data={**base, "id": ids[1:3]})
    assert "<strong data-purge-count>2</strong>" in r.text
    r = await browser.http.post(
        "/ui/queues/dead/dlq/purge", data={**base, "id": ids[1:3], "count": "3"}
    )
    assert r.status_code == 400  # the confirmation named another number
    r = await browser.http.post(
        "/ui/queues/dead/dlq/purge", data={**base, "id": ids[1:3], "count": "2"}
    )
    assert r.status_code == 303
    assert (await store.queue_stats("default", "dead")).dlq == 2
    for gone in ids[1:3]:
        assert (await api.call("GET", f"/tasks/{gone}", api.producer)).status_code == 404

    r = await browser.http.post("/ui/queues/dead/dlq/replay", data={**base, "all": "1"})
    assert r.status_code == 303
    stats = await store.queue_stats("default", "dead")
    assert (stats.ready, stats.dlq) == (3, 0)


async def test_task_page_shows_record_and_timeline_and_cancel_works(
    api: Api, browser: Browser
) -> None:
    t = await api.create("email", {"to": "<b>x</b>"}, maxAttempts=3)
    claimed = (await api.claim(commands=["email"])).json()
    r = await api.call("POST", f"/tasks/{t['id']}/nack", api.worker, {"reason": "smtp down"})
    assert r.status_code == 200
    await browser.login(api.admin)
    page = await browser.http.get(f"/ui/tasks/{t['id']}?tenant=default")
    assert page.status_code == 200
    assert "&lt;b&gt;x&lt;/b&gt;" in page.text and "<b>x</b>" not in page.text  # escaped
    assert 'data-kind="created"' in page.text and 'data-kind="claimed"' in page.text
    assert f"by worker {claimed['workerId']}" in page.text
    assert 'data-kind="nacked"' in page.text and "smtp down" in page.text
    assert "Reconstructed" not in page.text  # the recorded events
    csrf = await browser.csrf(f"/ui/tasks/{t['id']}?tenant=default")
    r = await browser.http.post(
        f"/ui/tasks/{t['id']}/cancel", data={"tenant": "default", "csrf": csrf}
    )
    assert r.status_code == 303
    task = (await api.call("GET", f"/tasks/{t['id']}", api.producer)).json()
    assert task["status"] == "CANCELLED"
    page = await browser.http.get(f"/ui/tasks/{t['id']}?tenant=default")
    assert 'data-kind="cancelled"' in page.text and "Cancel task" not in page.text


async def test_completed_task_shows_result_and_serves_inline_artifacts(
    api: Api, browser: Browser
) -> None:
    t = await api.create("render", {})
    claimed = (await api.claim(commands=["render"])).json()
    r = await api.call(
        "POST",
        f"/tasks/{t['id']}/result",
        api.worker,
        {
            "status": "COMPLETED",
            "result": {"pages": 3},
            "leaseId": claimed.get("leaseId"),
            "artifacts": [
                {"name": "out.txt", "contentBase64": "aGVsbG8=", "contentType": "text/plain"},
                {"name": "link", "url": "https://example.com/x"},
            ],
        },
    )
    assert r.status_code == 200, r.text
    await browser.login(api.admin)
    page = await browser.http.get(f"/ui/tasks/{t['id']}?tenant=default")
    assert "&#34;pages&#34;: 3" in page.text and 'data-kind="result"' in page.text
    link = re.search(r'href="(/ui/tasks/[^"]+/artifacts/[^"]+)"', page.text)
    assert link and 'href="https://example.com/x"' in page.text
    download = await browser.http.get(link.group(1).replace("&amp;", "&"))
    assert download.status_code == 200 and download.content == b"hello"
    assert download.headers["content-disposition"].startswith("attachment")


async def test_a_tenant_admin_sees_only_its_tenant(api: Api, browser: Browser) -> None:
    other = api.token("producer", sub="p2", tenant="other")
    r = await api.call("POST", "/tasks", other, {"command": "secret", "payload": {}})
    secret_id = r.json()["id"]
    await browser.login(api.admin)  # tenant "default"
    page = await browser.http.get("/ui/")
    assert "secret" not in page.text
    for path in ("/ui/?tenant=other", f"/ui/tasks/{secret_id}?tenant=other"):
        assert (await browser.http.get(path)).status_code == 403
    assert (await browser.http.get(f"/ui/tasks/{secret_id}")).status_code == 404
    csrf = await browser.csrf("/ui/")
    r = await browser.http.post("/ui/queues/secret/pause", data={"tenant": "other", "csrf": csrf})
    assert r.status_code == 403
    assert not (await api.ctx.store.queue_stats("other", "secret")).paused


async def test_an_all_tenants_admin_picks_the_tenant(api: Api, browser: Browser) -> None:
    other = api.token("producer", sub="p2", tenant="other")
    await api.call("POST", "/tasks", other, {"command": "secret", "payload": {}})
    await browser.login(api.token("admin", sub="root", tenant="*"))
    picker = await browser.http.get("/ui/")
    assert "Pick a tenant" in picker.text and 'href="/ui/?tenant=other"' in picker.text
    page = await browser.http.get("/ui/?tenant=other")
    assert 'data-command="secret"' in page.text


async def test_logout_needs_csrf_and_ends_the_session(api: Api, browser: Browser) -> None:
    await browser.login(api.admin)
    csrf = await browser.csrf("/ui/")
    assert (await browser.http.post("/ui/logout", data={})).status_code == 403
    r = await browser.http.post("/ui/logout", data={"csrf": csrf})
    assert r.status_code == 303 and "Max-Age=0" in r.headers["set-cookie"]
    assert (await browser.http.get("/ui/")).status_code == 303


async def test_the_token_never_reaches_the_log(
    api: Api, browser: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    await browser.login(api.admin)
    await browser.login("bad-" + api.admin)
    out = capsys.readouterr()
    assert api.admin not in out.out + out.err


async def test_ui_disabled_has_no_routes(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    config: cfgmod.Config = make_config(tmp_path, ui={"enabled": False})
    async for api in start_api(nursery, config, redis_url):
        r = await api.http.get(f"{api.base}/ui/login")
        assert r.status_code == 404


async def test_dev_one_click_login_from_loopback(
    api: Api, browser: Browser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from codeqd import cli

    path = tmp_path / "codeqd.toml"
    path.write_text(f'state_dir = "{api.ctx.config.state_dir}"\n')
    assert cli.main(["ui-token", "--config", str(path)]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("http://127.0.0.1:8080/ui/login/dev?ticket=")
    ticket = link.partition("ticket=")[2]
    assert (await browser.http.get(f"/ui/login/dev?ticket={ticket[:-3]}xyz")).status_code == 401
    r = await browser.http.get(f"/ui/login/dev?ticket={ticket}")
    assert r.status_code == 303 and "HttpOnly" in r.headers["set-cookie"]
    assert "Pick a tenant" in (await browser.http.get("/ui/")).text  # tenant "*"


async def test_dev_login_is_refused_outside_dev_mode(
    nursery: trio.Nursery, tmp_path: Path, redis_url: str
) -> None:
    from codeqd.http import mint_dev_login_ticket

    config = make_config(
        tmp_path,
        auth={"mode": "jwt", "producer": {"provider": "hs256", "secret": "s" * 40}},
    )
    async for api in start_api(nursery, config, redis_url):
        ticket = mint_dev_login_ticket(config)
        r = await api.http.get(f"{api.base}/ui/login/dev?ticket={ticket}")
        assert r.status_code == 403 and "set-cookie" not in r.headers


async def _workers_page(browser: Browser) -> str:
    page = await browser.http.get("/ui/workers?tenant=default")
    assert page.status_code == 200, page.text
    return page.text


async def test_workers_page_shows_open_streams_what_they_hold_and_subscriptions(
    api: Api, browser: Browser
) -> None:
    from tests.integration.test_worker_streams import open_stream

    await browser.login(api.admin)
    r = await api.call(
        "POST",
        "/workers/subscriptions",
        api.worker,
        {"callbackUrl": "https://hooks.example.com/ready", "eventTypes": ["report"]},
    )
    assert r.status_code == 200, r.text
    sub_id = r.json()["subscriptionId"]
    task = await api.create("email")
    async with open_stream(api) as holder:
        await holder.ready(2, commands=["email"])
        assert (await holder.task())["id"] == task["id"]
        async with open_stream(api) as idle:
            await idle.ready(0)
            # The record follows the stream within _RECORD_GAP: wait for what it shows.
            with trio.fail_after(15):
                while True:
                    text = await _workers_page(browser)
                    rows = re.findall(r'<tr data-stream="[0-9a-f]+">(.*?)</tr>', text, re.S)
                    holding = [row for row in rows if task["id"] in row]
                    if len(rows) == 2 and holding:
                        break
                    await trio.sleep(0.1)  # a bounded poll of the page: the record is async
        assert '<td data-count="inFlight">1 / 2</td>' in holding[0]
        assert "email" in holding[0] and "worker" in holding[0]
        assert f'href="/ui/tasks/{task["id"]}?tenant=default"' in holding[0]
        assert f'data-subscription="{sub_id}"' in text
        assert "hooks.example.com" in text
        # The idle stream closed: its record goes as the daemon ends the stream, not at
        # its expiry (two ping periods, 80 s).
        await _until_streams_listed(browser, 1)
    await _until_streams_listed(browser, 0)
    assert "No worker stream is open." in await _workers_page(browser)


async def _until_streams_listed(browser: Browser, n: int) -> None:
    with trio.fail_after(5):
        while len(re.findall(r'<tr data-stream="', await _workers_page(browser))) != n:
            await trio.sleep(0.05)  # a bounded poll: the daemon ends the stream after us


async def test_a_stream_record_whose_daemon_died_expires(api: Api) -> None:
    registry = api.ctx.store.streams
    await registry.put("default", "dead0001", {"id": "dead0001", "sub": "gone"}, ttl_ms=100)
    await registry.put("default", "live0001", {"id": "live0001", "sub": "here"}, ttl_ms=60_000)
    await registry.put("other", "theirs01", {"id": "theirs01", "sub": "x"}, ttl_ms=60_000)
    live, total = await registry.live("default")
    assert {s["id"] for s in live} == {"dead0001", "live0001"} and total == 2
    with trio.fail_after(5):
        while total != 1:
            await trio.sleep(0.05)  # the store's own clock expires it
            live, total = await registry.live("default")
    assert [s["id"] for s in live] == ["live0001"]
    await registry.delete("default", "live0001")
    assert await registry.live("default") == ([], 0)


async def test_search_finds_a_task_by_id_or_by_idempotency_key(api: Api, browser: Browser) -> None:
    t = await api.create("email", {}, idempotencyKey="order-42/confirm")
    await browser.login(api.admin)
    for wanted in (t["id"], "order-42/confirm", "  order-42/confirm "):
        r = await browser.http.get("/ui/tasks", params={"tenant": "default", "id": wanted})
        assert r.status_code == 303, wanted
        assert r.headers["location"].startswith(f"/ui/tasks/{t['id']}?"), wanted
    # A tenant admin searches only their own tenant (the store keys by tenant too).
    r = await browser.http.get("/ui/tasks", params={"tenant": "other", "id": "order-42/confirm"})
    assert r.status_code == 403
    r = await browser.http.get("/ui/tasks", params={"tenant": "default", "id": "no-such-key"})
    page = await browser.http.get(r.headers["location"])
    assert page.status_code == 404
    r = await browser.http.get("/ui/tasks", params={"tenant": "default", "id": "k" * 300})
    assert r.status_code == 400 and "id" in r.text


async def test_store_finds_by_idempotency_key_while_the_task_exists(api: Api) -> None:
    store = api.ctx.store
    t = await api.create("email", {}, idempotencyKey="k-1")
    assert await store.find_by_idempotency_key("default", "k-1") == t["id"]
    assert await store.find_by_idempotency_key("other", "k-1") is None
    assert await store.find_by_idempotency_key("default", "k-2") is None


async def test_queue_page_lists_each_state_with_cursor_paging(api: Api, browser: Browser) -> None:
    ready = [(await api.create("email", {"n": i}))["id"] for i in range(3)]
    delayed = await api.create("email", {}, delaySeconds=600)
    claimed = (await api.claim(commands=["email"])).json()
    await browser.login(api.admin)
    page = await browser.http.get("/ui/queues/email?tenant=default")  # no DLQ: ready
    assert page.status_code == 200 and 'aria-current="page">Ready (2)' in page.text
    for tid in ready[1:]:
        assert f'href="/ui/tasks/{tid}?tenant=default"' in page.text
    page = await browser.http.get("/ui/queues/email?tenant=default&state=delayed")
    assert 'data-state="delayed"' in page.text and delayed["id"] in page.text
    assert ready[1] not in page.text
    page = await browser.http.get("/ui/queues/email?tenant=default&state=in_progress")
    assert claimed["id"] in page.text and claimed["workerId"] in page.text
    page = await browser.http.get("/ui/queues/email?tenant=default&state=dlq")
    assert "The dead-letter queue is empty" in page.text
    r = await browser.http.get("/ui/queues/email?tenant=default&state=nope")
    assert r.status_code == 400 and "state" in r.text
    r = await browser.http.get("/ui/queues/email?tenant=default&state=ready&cursor=zz")
    assert r.status_code == 400 and "cursor" in r.text


async def test_a_task_without_recorded_events_gets_a_reconstructed_timeline(
    api: Api, browser: Browser
) -> None:
    """A task written before the store kept events: its record, without a list. (A first
    claim without a list is a task of today: its record tells that claim, so the task
    has claimed twice here.)"""
    t = await api.create("email", {})
    first = (await api.claim(commands=["email"])).json()
    store = api.ctx.store
    await store.nack("default", t["id"], first["workerId"], first["leaseId"], 0, "retry")
    claimed = (await api.claim(commands=["email"])).json()
    assert claimed["id"] == t["id"]
    for k in store.keys.all():
        await store.client.delete([k.events("default", t["id"])])
    await browser.login(api.admin)
    page = await browser.http.get(f"/ui/tasks/{t['id']}?tenant=default")
    assert "Reconstructed from the task record" in page.text
    assert f"attempt 2 by worker {claimed['workerId']}" in page.text


async def test_rates_count_the_tenants_transitions_per_minute(api: Api, browser: Browser) -> None:
    store = api.ctx.store
    ids = [(await api.create("rated", {"i": i}, maxAttempts=1))["id"] for i in range(6)]
    other = api.token("producer", sub="p2", tenant="other")
    await api.call("POST", "/tasks", other, {"command": "theirs", "payload": {}})
    leases = {}
    for i in range(len(ids)):
        # The last two with a 1-second lease, which the reaper will find expired.
        claimed = (await api.claim(commands=["rated"], leaseSeconds=300 if i < 4 else 1)).json()
        leases[claimed["id"]] = claimed.get("leaseId")
    assert set(leases) == set(ids)
    for tid, status in zip(ids[:3], ["COMPLETED", "COMPLETED", "FAILED"], strict=True):
        body: dict[str, Any] = {"status": status, "leaseId": leases[tid]}
        body |= {"result": {"ok": 1}} if status == "COMPLETED" else {"error": "boom"}
        r = await api.call("POST", f"/tasks/{tid}/result", api.worker, body)
        assert r.status_code == 200, r.text
    r = await api.call("POST", f"/tasks/{ids[3]}/nack", api.worker, {"leaseId": leases[ids[3]]})
    assert r.status_code == 200 and r.json()["status"] == "dlq", r.text
    # The last two leases run out: the reaper dead-letters them (maxAttempts 1).
    with trio.fail_after(10):
        while (await store.queue_stats("default", "rated")).dlq < 3:
            await store.reap_expired()
            await trio.sleep(0.05)  # a bounded poll: the store's clock runs the lease out

    await browser.login(api.admin)
    r = await browser.http.get("/ui/rates?tenant=default")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    totals = {"created": 6, "completed": 2, "failed": 1, "deadLettered": 3}
    assert body["totals"] == totals and body["stepSeconds"] == 60
    rates = await store.rates("default")
    assert body["startMs"] == rates.start
    for name, series in zip(RATE_SERIES, rates.series(), strict=True):
        assert body[name] == series and len(series) == 60
        # All in the last minute or two (the test may straddle a minute boundary).
        assert sum(series[-2:]) == totals[name] and not any(series[:-2])
    page = await browser.http.get("/ui/?tenant=default")
    assert 'data-rates-url="/ui/rates?tenant=default"' in page.text
    caption = "Last hour: 6 created, 2 completed,\n  1 failed, 3 dead-lettered."
    assert caption in page.text
    assert (await browser.http.get("/ui/rates")).json()["totals"] == totals  # its own tenant

    # A tenant admin may not read another tenant's rates: a JSON 403.
    r = await browser.http.get("/ui/rates?tenant=other")
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    r = await browser.http.get("/ui/rates?tenant=default&minutes=121")
    assert r.status_code == 400 and "minutes" in r.text
    # An admin of every tenant reads each tenant's own counts.
    root = Browser(api)
    try:
        await root.login(api.token("admin", sub="root", tenant="*"))
        r = await root.http.get("/ui/rates?tenant=other&minutes=5")
        assert r.json()["totals"] == {"created": 1, "completed": 0, "failed": 0, "deadLettered": 0}
        assert len(r.json()["created"]) == 5
        assert (await root.http.get("/ui/rates")).status_code == 400  # pick a tenant
    finally:
        await root.http.aclose()
    # Without a session: a JSON 401, not the login page.
    anonymous = httpx.AsyncClient(base_url=api.base)
    try:
        r = await anonymous.get("/ui/rates?tenant=default")
        assert r.status_code == 401 and r.json()["code"] == "ui_login_required"
    finally:
        await anonymous.aclose()
