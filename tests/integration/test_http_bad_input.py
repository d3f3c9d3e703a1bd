"""Bad input gets a JSON error naming the problem, with the right status; never a 500."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import RedisServer
from tests.integration.conftest import Api, make_config, start_api

MISSING = "01a207b1-88ed-78c7-89ec-9d85f8c0b900"


def assert_error(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"error", "code"}
    assert "Traceback" not in r.text
    for word in words:
        assert word in body["error"], body


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"payload": {}}, ["command", "required"]),
        ({"command": "", "payload": {}}, ["command"]),
        ({"command": "a b", "payload": {}}, ["command"]),
        ({"command": 5, "payload": {}}, ["command"]),
        ({"command": "x"}, ["payload", "required"]),
        ({"command": "x", "payload": None}, ["payload", "null"]),
        ({"command": "x", "payload": {}, "priority": 10}, ["priority"]),
        ({"command": "x", "payload": {}, "priority": -1}, ["priority"]),
        ({"command": "x", "payload": {}, "priority": "high"}, ["priority"]),
        ({"command": "x", "payload": {}, "priority": True}, ["priority"]),
        ({"command": "x", "payload": {}, "maxAttempts": 0}, ["maxAttempts"]),
        ({"command": "x", "payload": {}, "maxAttempts": 10**30}, ["maxAttempts"]),
        ({"command": "x", "payload": {}, "delaySeconds": -5}, ["delaySeconds"]),
        ({"command": "x", "payload": {}, "runAt": "tomorrow"}, ["runAt"]),
        ({"command": "x", "payload": {}, "runAt": 12}, ["runAt"]),
        ({"command": "x", "payload": {}, "webhook": "ftp://x"}, ["webhook"]),
        ({"command": "x", "payload": {}, "idempotencyKey": 7}, ["idempotencyKey"]),
        ([1, 2], ["object"]),
    ],
)
async def test_create_rejects_bad_fields(api: Api, body: object, words: list[str]) -> None:
    assert_error(await api.call("POST", "/tasks", api.producer, body), 400, *words)


async def test_malformed_json_wrong_type_and_huge_bodies(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.producer}", "Content-Type": "application/json"}
    r = await api.http.post(f"{api.base}/v1/codeq/tasks", content=b'{"command": ', headers=headers)
    assert_error(r, 400, "malformed JSON")
    r = await api.http.post(
        f"{api.base}/v1/codeq/tasks",
        content=b"command=x",
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert_error(r, 415, "application/json")
    big = b'{"command":"x","payload":{"s":"' + b"a" * (2 * 1024 * 1024) + b'"}}'
    r = await api.http.post(f"{api.base}/v1/codeq/tasks", content=big, headers=headers)
    assert_error(r, 413, "larger than")
    deep = {"command": "x", "payload": {}}
    node = deep["payload"]
    for _ in range(100):
        node["a"] = {}  # type: ignore[index]
        node = node["a"]  # type: ignore[index]
    assert_error(await api.call("POST", "/tasks", api.producer, deep), 400, "nested")


async def test_auth_errors(api: Api) -> None:
    r = await api.call("POST", "/tasks", None, {"command": "x", "payload": {}})
    assert_error(r, 401, "missing bearer token")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(await api.call("POST", "/tasks", "not-a-jwt", {}), 401, "invalid token")
    assert_error(await api.call("GET", "/admin/queues", api.producer), 403, "admin")
    assert_error(await api.claim(api.producer), 403, "worker token")
    narrow = api.token("worker", sub="w9", events=["only"])
    assert_error(await api.claim(narrow, commands=["other"]), 403, "other")
    expired = api.token("producer", ttl=-600)
    assert_error(await api.call("GET", f"/tasks/{MISSING}", expired), 401, "expired")


async def test_claim_and_worker_route_validation(api: Api) -> None:
    assert_error(await api.claim(leaseSeconds=0), 400, "leaseSeconds")
    assert_error(await api.claim(leaseSeconds=10**9), 400, "leaseSeconds")
    assert_error(await api.claim(waitSeconds=-1), 400, "waitSeconds")
    assert_error(await api.claim(commands="x"), 400, "commands")
    assert_error(await api.claim(commands=[]), 400, "commands")
    for route in ("heartbeat", "abandon", "nack"):
        assert_error(
            await api.call("POST", f"/tasks/{MISSING}/{route}", api.worker, {}), 404, "not found"
        )
    assert_error(
        await api.call(
            "POST", f"/tasks/{MISSING}/result", api.worker, {"status": "COMPLETED", "result": {}}
        ),
        404,
    )
    assert_error(await api.call("GET", "/tasks/../../etc", api.producer), 404)
    assert_error(await api.call("GET", "/tasks/not-an-id", api.producer), 404, "not found")
    task = await api.create("v", {})
    assert_error(
        await api.call(
            "POST", f"/tasks/{task['id']}/result", api.worker, {"status": "COMPLETED", "result": {}}
        ),
        409,
        "PENDING",
    )
    await api.claim(commands=["v"])
    for body, field in [
        ({"status": "DONE"}, "status"),
        ({"status": "COMPLETED"}, "result"),
        ({"status": "COMPLETED", "result": [1]}, "result"),
        ({"status": "FAILED"}, "error"),
        ({"status": "COMPLETED", "result": {}, "artifacts": [{"name": 1}]}, "artifacts[0].name"),
    ]:
        assert_error(
            await api.call("POST", f"/tasks/{task['id']}/result", api.worker, body), 400, field
        )
    assert_error(
        await api.call(
            "POST", f"/tasks/{task['id']}/heartbeat", api.worker, {"extendSeconds": "soon"}
        ),
        400,
        "extendSeconds",
    )
    assert_error(
        await api.call("POST", f"/tasks/{task['id']}/nack", api.worker, {"delaySeconds": -1}),
        400,
        "delaySeconds",
    )
    assert_error(
        await api.call("GET", f"/tasks/{task['id']}/result?waitSeconds=-1", api.producer),
        400,
        "waitSeconds",
    )


async def test_unknown_route_and_method_are_json(api: Api) -> None:
    assert_error(await api.call("GET", "/nope", api.producer), 404, "no route")
    assert_error(await api.call("PUT", "/tasks", api.producer, {}), 405)
    r = await api.http.get(f"{api.base}/healthz", headers={"X-Request-Id": "abc-123"})
    assert r.json() == {"status": "ok"} and r.headers["X-Request-Id"] == "abc-123"
    # Without one (or with one that is not a safe token), each request gets its own.
    given = [
        (await api.http.get(f"{api.base}/healthz", headers=h)).headers["X-Request-Id"]
        for h in ({}, {}, {"X-Request-Id": "bad id!"})
    ]
    assert all(re.fullmatch("[0-9a-f]{32}", rid) for rid in given), given
    assert len(set(given)) == 3, given


async def test_store_down_gives_503_then_recovers(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r")
    (tmp_path / "r").mkdir()
    server.start()
    config = make_config(tmp_path, store={"command_timeout": "1s", "connect_timeout": "500ms"})
    try:
        async for api in start_api(nursery, config, server.url):
            task = await api.create("s", {})
            server.stop(kill=True)
            with trio.fail_after(5):
                r = await api.call("GET", f"/tasks/{task['id']}", api.producer)
            assert_error(r, 503, "unavailable")
            assert r.headers["Retry-After"]
            assert (await api.http.get(f"{api.base}/readyz")).status_code == 503
            server.start()
            r = await api.call("GET", f"/tasks/{task['id']}", api.producer)
            assert r.status_code == 200 and r.json()["id"] == task["id"]
            assert (await api.http.get(f"{api.base}/readyz")).status_code == 200
    finally:
        server.stop()
