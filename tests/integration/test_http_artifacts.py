"""Inline artifacts: stored with the result, served back at a URL of the task, tenant-scoped,
size-capped, dropped when their result is refused and removed with their task."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from tests.integration.conftest import Api


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


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


async def test_refused_result_leaves_no_files_and_cleanup_removes_them(api: Api) -> None:
    task = await _claimed(api)
    root = Path(api.ctx.artifacts.root)
    art = [{"name": "out", "contentBase64": b64(b"first")}]
    ok = await api.call(
        "POST",
        f"/tasks/{task['id']}/result",
        api.worker,
        {"status": "COMPLETED", "result": {}, "artifacts": art},
    )
    assert ok.status_code == 200
    files = sorted(p.name for p in root.rglob("*") if p.is_file())
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
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == files  # only the first
    r = await api.call(
        "POST", "/admin/tasks/cleanup", api.admin, {"before": "2999-01-01T00:00:00Z"}
    )
    assert r.json()["deleted"] == 1
    assert [p for p in root.rglob("*") if p.is_file()] == []


async def test_artifact_paths_stay_under_the_root(api: Api) -> None:
    root = Path(api.ctx.artifacts.root)
    art = [{"name": "out", "contentBase64": b64(b"x")}]
    for task_id in ("...", "not-a-task"):
        r = await api.call(
            "POST",
            f"/tasks/{task_id}/result",
            api.worker,
            {"status": "COMPLETED", "result": {}, "artifacts": art},
        )
        assert r.status_code == 404 and r.json()["code"] == "task_not_found", r.text
    dots = api.token("worker", tenant="..")
    made = await api.call(
        "POST", "/tasks", api.token("producer", tenant=".."), {"command": "render", "payload": {}}
    )
    assert made.status_code == 202, made.text
    claimed = await api.call("POST", "/tasks/claim", dots, {"commands": ["render"]})
    assert claimed.status_code == 200, claimed.text
    r = await api.call(
        "POST",
        f"/tasks/{claimed.json()['id']}/result",
        dots,
        {"status": "COMPLETED", "result": {}, "artifacts": art},
    )
    assert r.status_code == 200, r.text
    stored = [p for p in root.parent.rglob("*") if re.fullmatch(r"[0-9a-f]{16}-[0-9]+", p.name)]
    assert len(stored) == 1 and stored[0].resolve().is_relative_to(root.resolve()), stored


async def test_batch_results_store_accepted_and_drop_refused_artifacts(api: Api) -> None:
    root = Path(api.ctx.artifacts.root)
    kept = await _claimed(api)
    refused = await _claimed(api)
    r = await api.call(
        "POST",
        "/tasks/batch/results",
        api.worker,
        {
            "results": [
                {
                    "taskId": kept["id"],
                    "leaseId": kept["leaseId"],
                    "status": "COMPLETED",
                    "result": {},
                    "artifacts": [{"name": "a", "contentBase64": b64(b"kept")}],
                },
                {
                    "taskId": refused["id"],
                    "leaseId": "not-the-lease",
                    "status": "COMPLETED",
                    "result": {},
                    "artifacts": [{"name": "b", "contentBase64": b64(b"refused")}],
                },
            ]
        },
    )
    assert r.status_code == 200, r.text
    ok, error = r.json()["results"]
    assert error["code"] == "lease_lost", error
    got = await api.http.get(
        f"{api.base}{ok['artifacts'][0]['url']}",
        headers={"Authorization": f"Bearer {api.producer}"},
    )
    assert got.status_code == 200 and got.content == b"kept"
    assert sorted(p.read_bytes() for p in root.rglob("*") if p.is_file()) == [b"kept"]
