"""Scopes, eventTypes, ownership and leaseId fencing, admin role, tenant isolation."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest

from tests.integration.conftest import Api

MISSING = "01a207b1-88ed-78c7-89ec-9d85f8c0b900"
SCOPES = ["codeq:claim", "codeq:heartbeat", "codeq:abandon", "codeq:nack", "codeq:result"]


def dev_jwt(api: Api, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"iat": now, "exp": now + 600, **claims}, api.secret, algorithm="HS256")


def worker_with(
    api: Api, scopes: list[str], events: list[str] | None = None, sub: str = "w-x"
) -> str:
    return dev_jwt(
        api,
        sub=sub,
        aud=["codeq-worker"],
        tenantId="default",
        eventTypes=events or ["*"],
        scope=" ".join(scopes),
    )


def assert_error(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert set(body) >= {"error", "code", "details"}
    for w in words:
        assert w in body["error"], body
    return body


@pytest.mark.parametrize("scope", SCOPES)
async def test_each_worker_route_needs_its_scope(api: Api, scope: str) -> None:
    task = await api.create("s", {})
    full = worker_with(api, SCOPES)
    claimed = (await api.claim(full, commands=["s"])).json()
    lacking = worker_with(api, [s for s in SCOPES if s != scope])
    route, body = {
        "codeq:claim": ("/tasks/claim", {}),
        "codeq:heartbeat": (f"/tasks/{task['id']}/heartbeat", {}),
        "codeq:abandon": (f"/tasks/{task['id']}/abandon", {}),
        "codeq:nack": (f"/tasks/{task['id']}/nack", {}),
        "codeq:result": (f"/tasks/{task['id']}/result", {"status": "COMPLETED", "result": {}}),
    }[scope]
    out = assert_error(await api.call("POST", route, lacking, body), 403, scope)
    assert out["details"] == {"scope": scope}
    # The refusal changed nothing...
    now = (await api.call("GET", f"/tasks/{task['id']}", api.producer)).json()
    assert claimed["id"] == task["id"]
    for key in ("status", "attempts", "leaseUntil", "workerId"):
        assert now[key] == claimed[key], (key, now, claimed)
    # ...and the scoped token can still do it, with the route's own answer.
    spare = await api.create("s", {})  # what the retried claim gets
    r = await api.call("POST", route, full, {**body, "leaseId": claimed.get("leaseId")})
    assert r.status_code == 200, r.text
    got = r.json()
    if scope == "codeq:claim":
        assert got["id"] == spare["id"] and got["status"] == "IN_PROGRESS", got
    elif scope == "codeq:heartbeat":
        assert got["ok"] is True and got["leaseUntil"] >= claimed["leaseUntil"], got
    elif scope == "codeq:abandon":
        assert got == {"status": "requeued"}
    elif scope == "codeq:nack":
        assert got["status"] == "requeued" and isinstance(got["delaySeconds"], int), got
    else:
        assert got["taskId"] == task["id"] and got["status"] == "COMPLETED", got
        assert got["result"] == {}


async def test_event_types_subset_and_wildcard(api: Api) -> None:
    for cmd in ("a", "b", "c"):
        await api.create(cmd, {})
    narrow = worker_with(api, SCOPES, ["a", "b"])
    assert_error(await api.claim(narrow, commands=["a", "c"]), 403, "c")
    assert (await api.claim(narrow, commands=["b"])).json()["command"] == "b"
    assert (await api.claim(narrow)).json()["command"] == "a"  # omitted: the token's list
    assert (await api.claim(narrow)).status_code == 204  # "c" is not theirs
    wildcard = worker_with(api, SCOPES, ["*"])
    assert (await api.claim(wildcard, commands=["c"])).json()["command"] == "c"
    none = dev_jwt(api, sub="w", aud=["codeq-worker"], scope=" ".join(SCOPES))
    assert_error(await api.claim(none), 403, "eventTypes")


async def test_ownership_and_lease_fencing(api: Api) -> None:
    task = await api.create("own", {})
    a = worker_with(api, SCOPES, sub="worker-a")
    b = worker_with(api, SCOPES, sub="worker-b")
    first = (await api.claim(a, commands=["own"], leaseSeconds=60)).json()
    tid = task["id"]
    for route, body in [
        ("heartbeat", {}),
        ("nack", {}),
        ("abandon", {}),
        ("result", {"status": "COMPLETED", "result": {}}),
    ]:
        # As codeQ answers a worker that is not the lease holder: 403.
        r = await api.call("POST", f"/tasks/{tid}/{route}", b, body)
        assert (r.status_code, r.json()) == (
            403,
            {
                "error": f"task {tid} is leased by another worker",
                "code": "not_lease_holder",
                "details": {},
            },
        ), route
    # A pool sharing one sub is fenced by leaseId: the stale lease holder is refused.
    assert (
        await api.call("POST", f"/tasks/{tid}/abandon", a, {"leaseId": first["leaseId"]})
    ).status_code == 200
    second = (await api.claim(a, commands=["own"])).json()
    assert second["leaseId"] != first["leaseId"]
    out = assert_error(
        await api.call(
            "POST",
            f"/tasks/{tid}/result",
            a,
            {"status": "COMPLETED", "result": {}, "leaseId": first["leaseId"]},
        ),
        409,
        "lost",
    )
    assert out["code"] == "lease_lost"
    r = await api.call(
        "POST", f"/tasks/{tid}/heartbeat", a, {}, headers={"X-Lease-Id": first["leaseId"]}
    )
    assert_error(r, 409, "lost")
    r = await api.call(
        "POST",
        f"/tasks/{tid}/result",
        a,
        {"status": "COMPLETED", "result": {"ok": 1}, "leaseId": second["leaseId"]},
    )
    assert r.status_code == 200, r.text


async def test_cross_tenant_reads_and_writes_look_missing(api: Api) -> None:
    mine = await api.create("t", {"secret": 1})
    other_p = api.token("producer", sub="intruder", tenant="other")
    other_w = api.token("worker", sub="intruder-w", tenant="other")
    missing_id = mine["id"][:-4] + ("0000" if not mine["id"].endswith("0000") else "1111")
    calls = [
        ("GET", "/tasks/{}", other_p, None),
        ("GET", "/tasks/{}/result", other_p, None),
        ("DELETE", "/tasks/{}", other_p, None),
        ("GET", "/tasks/{}", other_w, None),
        ("POST", "/tasks/{}/heartbeat", other_w, {}),
        ("POST", "/tasks/{}/abandon", other_w, {}),
        ("POST", "/tasks/{}/nack", other_w, {}),
        ("POST", "/tasks/{}/result", other_w, {"status": "COMPLETED", "result": {}}),
    ]
    for method, path, token, body in calls:
        theirs = await api.call(method, path.format(mine["id"]), token, body)
        absent = await api.call(method, path.format(missing_id), token, body)
        assert theirs.status_code == absent.status_code == 404, (path, theirs.text)
        assert theirs.json() == {
            **absent.json(),
            "error": absent.json()["error"].replace(missing_id, mine["id"]),
        }
    # The other tenant's claim never sees it; the owner's task is untouched.
    assert (await api.claim(other_w, commands=["t"])).status_code == 204
    r = await api.call("GET", f"/tasks/{mine['id']}", api.producer)
    assert r.json()["status"] == "PENDING" and r.json()["payload"] == {"secret": 1}


async def test_admin_routes_are_scoped_to_the_admins_tenant(api: Api) -> None:
    await api.create("q1", {})
    other = api.token("producer", sub="o", tenant="other")
    r = await api.call("POST", "/tasks", other, {"command": "q2", "payload": {}})
    assert r.status_code == 202
    admin_default = api.admin
    admin_other = api.token("admin", sub="adm-o", tenant="other")
    root = api.token("admin", sub="root", tenant="*")

    def names(r: httpx.Response) -> list[str]:
        return sorted(q["command"] for q in r.json())

    assert names(await api.call("GET", "/admin/queues", admin_default)) == ["q1"]
    assert names(await api.call("GET", "/admin/queues", admin_other)) == ["q2"]
    assert_error(
        await api.call("GET", "/admin/queues?tenant=other", admin_default), 403, "tenant '*'"
    )
    assert names(await api.call("GET", "/admin/queues?tenant=default", admin_default)) == ["q1"]
    assert names(await api.call("GET", "/admin/queues?tenant=other", root)) == ["q2"]
    assert_error(await api.call("GET", "/admin/queues", root), 400, "tenant")
    r = await api.call("GET", "/admin/queues/q2/stats?tenant=other", root)
    assert r.json()["ready"] == 1
    assert (await api.call("GET", "/admin/queues/q2/stats", admin_default)).json()["ready"] == 0
    # tenant '*' is for admin routes only, and only for admins.
    assert_error(
        await api.call("POST", "/tasks", root, {"command": "x", "payload": {}}), 403, "admin routes"
    )
    star = api.token("producer", sub="p*", tenant="*")
    assert_error(await api.call("GET", f"/tasks/{MISSING}", star), 403, "reserved")
    assert_error(await api.call("GET", "/admin/queues", api.producer), 403, "admin")
    assert_error(await api.call("GET", "/admin/queues", api.worker), 403)


async def test_admin_cleanup_is_tenant_scoped_unless_all_tenants(api: Api) -> None:
    other_p = api.token("producer", sub="o", tenant="other")
    other_w = api.token("worker", sub="ow", tenant="other")
    done: dict[str, list[str]] = {"default": [], "other": []}
    for tenant, p, w in (("default", api.producer, api.worker), ("other", other_p, other_w)):
        for _ in range(2):
            r = await api.call("POST", "/tasks", p, {"command": "c", "payload": {}})
            tid = r.json()["id"]
            claimed = (await api.claim(w, commands=["c"])).json()
            r = await api.call(
                "POST",
                f"/tasks/{tid}/result",
                w,
                {"status": "COMPLETED", "result": {}, "leaseId": claimed["leaseId"]},
            )
            assert r.status_code == 200
            done[tenant].append(tid)
    future = "2999-01-01T00:00:00Z"
    r = await api.call("POST", "/admin/tasks/cleanup", api.admin, {"before": future})
    # codeQ's answer: what was deleted, and the cut-off and limit applied.
    assert (r.status_code, r.json()) == (
        200,
        {"deleted": 2, "before": "2999-01-01T00:00:00.000Z", "limit": 1000},
    )
    r = await api.call("GET", f"/tasks/{done['other'][0]}", other_p)
    assert r.status_code == 200
    root = api.token("admin", sub="root", tenant="*")
    r = await api.call(
        "POST", "/admin/tasks/cleanup", root, {"before": "2999-01-01T02:00:00+02:00", "limit": 7}
    )
    assert r.json() == {"deleted": 2, "before": "2999-01-01T00:00:00.000Z", "limit": 7}
    assert (await api.call("GET", f"/tasks/{done['other'][0]}", other_p)).status_code == 404
