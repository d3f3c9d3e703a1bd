"""Inline artifacts: stored with the result in the same script (none when it is refused),
served back at a URL of the task by any codeqd of the store, tenant-scoped, size-capped,
removed with their task."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import trio

from codeqd import config as cfgmod
from tests.integration.auth.conftest import serving
from tests.integration.conftest import Api, with_overrides


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def stored(api: Api) -> list[bytes]:
    """Every inline artifact content in the store, sorted."""
    store = api.ctx.store
    out: list[bytes] = []
    with store.client.decoding(False):
        for k in store.keys.all():
            out += (await store.client.hgetall(k.artifacts)).values()
    return sorted(out)


async def _claimed(api: Api, command: str = "render") -> dict[str, Any]:
    await api.create(command, {})
    r = await api.claim(commands=[command])
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


async def test_inline_artifact_round_trip(api: Api) -> None:
    task = await _claimed(api)
    body = {
        "status": "COMPLETED",
        "result": {"pages": 1},
        "leaseId": task["leaseId"],
        "artifacts": [
            {"name": "report.txt", "contentBase64": b64(b"hello\n"), "contentType": "text/plain"},
            {"name": "elsewhere", "url": "https://example.com/x.pdf"},
        ],
    }
    r = await api.call("POST", f"/tasks/{task['id']}/result", api.worker, body)
    assert r.status_code == 200, r.text
    stored, linked = r.json()["artifacts"]
    assert linked == {"name": "elsewhere", "url": "https://example.com/x.pdf"}
    assert stored["name"] == "report.txt" and stored["size"] == 6
    assert stored["url"].startswith(f"/v1/codeq/tasks/{task['id']}/artifacts/")

    got = await api.http.get(
        f"{api.base}{stored['url']}", headers={"Authorization": f"Bearer {api.producer}"}
    )
    assert got.status_code == 200 and got.content == b"hello\n"
    assert got.headers["content-type"].startswith("text/plain")
    other = api.token("producer", tenant="someone-else")
    denied = await api.http.get(
        f"{api.base}{stored['url']}", headers={"Authorization": f"Bearer {other}"}
    )
    assert denied.status_code == 404 and denied.json()["code"] == "task_not_found"
    missing = await api.call(
        "GET", f"/tasks/{task['id']}/artifacts/0123456789abcdef-9", api.producer
    )
    assert missing.status_code == 404 and missing.json()["code"] == "artifact_not_found"


async def test_bad_inline_artifacts_are_400(api: Api) -> None:
    task = await _claimed(api)
    limit = api.ctx.config.limits.artifact_bytes
    for artifact, words in (
        ({"name": "a", "contentBase64": "not base64!"}, "not valid base64"),
        ({"name": "a", "contentBase64": b64(b"x" * (limit + 1))}, "limits.artifact_bytes"),
        ({"name": "a", "contentBase64": b64(b"x"), "contentType": "no type"}, "media type"),
        ({"name": "a", "contentBase64": 5}, "base64 string"),
    ):
        r = await api.call(
            "POST",
            f"/tasks/{task['id']}/result",
            api.worker,
            {"status": "COMPLETED", "result": {}, "artifacts": [artifact]},
        )
        assert r.status_code == 400 and words in r.json()["error"], r.text
    assert (await api.claim(commands=["render"])).status_code == 204  # still leased


async def test_refused_result_stores_nothing_and_cleanup_removes_them(api: Api) -> None:
    task = await _claimed(api)
    art = [{"name": "out", "contentBase64": b64(b"first")}]
    ok = await api.call(
        "POST",
        f"/tasks/{task['id']}/result",
        api.worker,
        {"status": "COMPLETED", "result": {}, "artifacts": art},
    )
    assert ok.status_code == 200
    again = await api.call(
        "POST",
        f"/tasks/{task['id']}/result",
        api.worker,
        {
            "status": "COMPLETED",
            "result": {},
            "artifacts": [{"name": "out", "contentBase64": b64(b"second")}],
        },
    )
    assert again.status_code == 409
    assert await stored(api) == [b"first"]
    for task_id in ("...", "not-a-task"):  # ids that cannot be tasks: 404, nothing stored
        r = await api.call(
            "POST",
            f"/tasks/{task_id}/result",
            api.worker,
            {"status": "COMPLETED", "result": {}, "artifacts": art},
        )
        assert r.status_code == 404 and r.json()["code"] == "task_not_found", r.text
    assert await stored(api) == [b"first"]
    r = await api.call(
        "POST", "/admin/tasks/cleanup", api.admin, {"before": "2999-01-01T00:00:00Z"}
    )
    assert r.json()["deleted"] == 1
    assert await stored(api) == []
    gone = await api.http.get(
        f"{api.base}{ok.json()['artifacts'][0]['url']}",
        headers={"Authorization": f"Bearer {api.producer}"},
    )
    assert gone.status_code == 404


async def test_binary_content_is_served_by_every_codeqd_of_the_store(
    api: Api, nursery: trio.Nursery, tmp_path: Path, redis_url: str, config: cfgmod.Config
) -> None:
    task = await _claimed(api)
    content = bytes(range(256)) * 3
    r = await api.call(
        "POST",
        f"/tasks/{task['id']}/result",
        api.worker,
        {
            "status": "COMPLETED",
            "result": {},
            "artifacts": [{"name": "blob", "contentBase64": b64(content)}],
        },
    )
    assert r.status_code == 200, r.text
    url = r.json()["artifacts"][0]["url"]
    other_config = with_overrides(config, state_dir=str(tmp_path / "other"))  # own dev secret
    async with serving(nursery, other_config, redis_url) as other:  # a second daemon
        got = await other.http.get(
            f"{other.base}{url}", headers={"Authorization": f"Bearer {other.producer}"}
        )
    assert got.status_code == 200 and got.content == content
    assert got.headers["content-type"] == "application/octet-stream"


async def test_batch_results_store_accepted_and_not_refused_artifacts(api: Api) -> None:
    kept = await _claimed(api)
    refused = await _claimed(api)
    r = await api.call(
        "POST",
        "/tasks/batch/results",
        api.worker,
        {
            "results": [
                {
                    "taskId": refused["id"],
                    "leaseId": "not-the-lease",
                    "status": "COMPLETED",
                    "result": {},
                    "artifacts": [{"name": "b", "contentBase64": b64(b"refused")}],
                },
                {
                    "taskId": kept["id"],
                    "leaseId": kept["leaseId"],
                    "status": "COMPLETED",
                    "result": {},
                    "artifacts": [
                        {"name": "a", "contentBase64": b64(b"kept")},
                        {"name": "link", "url": "https://example.com/a"},
                        {"name": "c", "contentBase64": b64(b"kept too")},
                    ],
                },
            ]
        },
    )
    assert r.status_code == 200, r.text
    error, ok = r.json()["results"]
    assert error["code"] == "lease_lost", error
    for artifact, content in zip(
        (ok["artifacts"][0], ok["artifacts"][2]), (b"kept", b"kept too"), strict=True
    ):
        got = await api.http.get(
            f"{api.base}{artifact['url']}", headers={"Authorization": f"Bearer {api.producer}"}
        )
        assert got.status_code == 200 and got.content == content
    assert ok["artifacts"][1] == {"name": "link", "url": "https://example.com/a"}
    assert await stored(api) == [b"kept", b"kept too"]


async def test_a_download_is_an_attachment_never_rendered_or_sniffed(api: Api) -> None:
    task = await _claimed(api)
    page = b"<html><script>alert(document.cookie)</script></html>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    r = await api.call(
        "POST",
        f"/tasks/{task['id']}/result",
        api.worker,
        {
            "status": "COMPLETED",
            "result": {},
            "artifacts": [
                {"name": "page.html", "contentBase64": b64(page), "contentType": "text/html"},
                {
                    "name": 'ré"port/../x.svg',
                    "contentBase64": b64(svg),
                    "contentType": "image/svg+xml",
                },
            ],
        },
    )
    assert r.status_code == 200, r.text
    html, image = r.json()["artifacts"]
    auth = {"Authorization": f"Bearer {api.producer}"}
    got = await api.http.get(f"{api.base}{html['url']}", headers=auth)
    assert got.status_code == 200 and got.content == page
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"page.html\"; filename*=UTF-8''page.html"
    )
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-security-policy"] == "default-src 'none'; sandbox"
    got = await api.http.get(f"{api.base}{image['url']}", headers=auth)
    assert got.status_code == 200 and got.content == svg
    # The quoted fallback has nothing that could end the parameter or name a path;
    # the exact name travels percent-encoded (RFC 6266 / 8187).
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"r__port_.._x.svg\"; filename*=UTF-8''r%C3%A9%22port%2F..%2Fx.svg"
    )
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-security-policy"] == "default-src 'none'; sandbox"


async def test_a_link_artifact_must_be_an_http_url(api: Api) -> None:
    task = await _claimed(api)
    for url in (
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "ftp://example.com/x",
        "/relative/path",
        "//example.com/x",
        "http:///no-host",
        "https://example.com/a b",
    ):
        r = await api.call(
            "POST",
            f"/tasks/{task['id']}/result",
            api.worker,
            {
                "status": "COMPLETED",
                "result": {},
                "artifacts": [
                    {"name": "ok", "url": "https://example.com/ok"},
                    {"name": "bad", "url": url},
                ],
            },
        )
        assert r.status_code == 400, (url, r.text)
        body = r.json()
        assert body["code"] == "validation_error"
        assert body["details"]["field"] == "artifacts[1].url", body
    assert (await api.claim(commands=["render"])).status_code == 204  # still leased
    r = await api.call(
        "POST",
        f"/tasks/{task['id']}/result",
        api.worker,
        {
            "status": "COMPLETED",
            "result": {},
            "artifacts": [{"name": "up", "url": "HTTPS://example.com/x?y=1#z"}],
        },
    )
    assert r.status_code == 200, r.text
