"""Admin routes over HTTP: DLQ list/replay/purge round trips, pause/resume, cancel."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Api


async def _dead_letter(api: Api, n: int, command: str = "dead") -> list[str]:
    ids = []
    for i in range(n):
        t = await api.create(command, {"i": i}, maxAttempts=1)
        claimed = (await api.claim(commands=[command])).json()
        assert claimed["id"] == t["id"]
        r = await api.call("POST", f"/tasks/{t['id']}/nack", api.worker, {"reason": "nope"})
        assert r.json() == {"status": "dlq", "delaySeconds": 0}
        ids.append(t["id"])
    return ids


async def test_dlq_list_pages_replay_and_purge(api: Api) -> None:
    ids = await _dead_letter(api, 5)
    r = await api.call("GET", "/admin/queues/dead/dlq?limit=2", api.admin)
    page1 = r.json()
    assert [t["id"] for t in page1["tasks"]] == ids[:2] and page1["nextCursor"]
    r = await api.call(
        "GET", f"/admin/queues/dead/dlq?limit=10&cursor={page1['nextCursor']}", api.admin
    )
    assert [t["id"] for t in r.json()["tasks"]] == ids[2:] and r.json()["nextCursor"] is None

    unknown = "01a2080e-f61c-7e06-9370-78e2d01c0800"
    r = await api.call(
        "POST", "/admin/queues/dead/dlq/replay", api.admin, {"ids": [ids[0], unknown, "not-an-id"]}
    )
    body = r.json()
    assert body["replayed"] == 1 and body["ids"] == [ids[0]]
    assert sorted(body["notFound"]) == sorted([unknown, "not-an-id"])
    replayed = (await api.claim(commands=["dead"])).json()
    assert replayed["id"] == ids[0] and replayed["attempts"] == 1

    r = await api.call("POST", "/admin/queues/dead/dlq/purge", api.admin, {"limit": 2})
    assert r.json()["purged"] == 2 and r.json()["ids"] == ids[1:3]
    assert (await api.call("GET", f"/tasks/{ids[1]}", api.producer)).status_code == 404
    stats = (await api.call("GET", "/admin/queues/dead/stats", api.admin)).json()
    assert stats == {
        "command": "dead",
        "ready": 0,
        "delayed": 0,
        "inProgress": 1,
        "dlq": 2,
        "paused": False,
    }


async def test_pause_resume_and_unknown_command(api: Api) -> None:
    r = await api.call("POST", "/admin/queues/never-used/pause", api.admin)
    assert r.json() == {"command": "never-used", "paused": True}
    queues = (await api.call("GET", "/admin/queues", api.admin)).json()
    assert {
        "command": "never-used",
        "ready": 0,
        "delayed": 0,
        "inProgress": 0,
        "dlq": 0,
        "paused": True,
    } in queues
    await api.create("never-used", {})
    assert (await api.claim(commands=["never-used"])).status_code == 204
    await api.call("POST", "/admin/queues/never-used/resume", api.admin)
    assert (await api.claim(commands=["never-used"])).status_code == 200


async def test_cancel_in_progress_then_result_is_409(api: Api) -> None:
    pending = await api.create("c", {})
    delayed = await api.create("c", {}, delaySeconds=600)
    for t in (pending, delayed):
        r = await api.call("DELETE", f"/tasks/{t['id']}", api.producer)
        assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
    running = await api.create("c", {})
    claimed: dict[str, Any] = (await api.claim(commands=["c"])).json()
    assert claimed["id"] == running["id"]
    assert (await api.call("DELETE", f"/tasks/{running['id']}", api.producer)).status_code == 200
    r = await api.call(
        "POST",
        f"/tasks/{running['id']}/result",
        api.worker,
        {"status": "COMPLETED", "result": {}, "leaseId": claimed["leaseId"]},
    )
    assert r.status_code == 409 and "CANCELLED" in r.json()["error"]
    r = await api.call("DELETE", f"/tasks/{running['id']}", api.producer)
    assert r.status_code == 409


async def test_admin_routes_need_an_admin(api: Api) -> None:
    r = await api.call("GET", "/admin/queues", api.producer)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
