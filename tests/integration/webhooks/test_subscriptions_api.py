"""Subscription routes: create, heartbeat, delete; validation, scopes and tenancy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import trio

from codeqd.store._keys import escape_tenant
from codeqd.store._subscriptions import Subscriptions
from tests.integration.conftest import Api, make_config, start_api
from tests.integration.webhooks.conftest import worker_token

PATH = "/workers/subscriptions"


def _at(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def test_create_heartbeat_delete(api: Api) -> None:
    r = await api.call(
        "POST",
        PATH,
        api.worker,
        {
            "callbackUrl": "http://127.0.0.1:9/cb",
            "eventTypes": ["email"],
            "ttlSeconds": 60,
            "minIntervalSeconds": 0,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"subscriptionId", "expiresAt"}
    sub_id = body["subscriptionId"]
    first = _at(body["expiresAt"])
    r = await api.call("POST", f"{PATH}/{sub_id}/heartbeat", api.worker, {"ttlSeconds": 600})
    assert r.status_code == 200 and r.json()["subscriptionId"] == sub_id
    assert _at(r.json()["expiresAt"]) >= first + 500
    r = await api.call("POST", f"{PATH}/{sub_id}/heartbeat", api.worker)
    assert r.status_code == 200  # no body: renewed by the subscription's own TTL
    (stored,) = await Subscriptions(api.ctx.store).active(escape_tenant("default"))
    assert stored["callbackUrl"] == "http://127.0.0.1:9/cb"
    assert stored["deliveryMode"] == "fanout" and stored["eventTypes"] == ["email"]
    assert (await api.call("DELETE", f"{PATH}/{sub_id}", api.worker)).status_code == 204
    r = await api.call("POST", f"{PATH}/{sub_id}/heartbeat", api.worker)
    assert r.status_code == 404 and r.json()["code"] == "subscription_not_found"
    assert (await api.call("DELETE", f"{PATH}/{sub_id}", api.worker)).status_code == 404
    assert await Subscriptions(api.ctx.store).active(escape_tenant("default")) == []


async def test_another_tenant_gets_404(api: Api) -> None:
    r = await api.call("POST", PATH, api.worker, {"callbackUrl": "https://example.com/cb"})
    sub_id = r.json()["subscriptionId"]
    other = worker_token(api.secret, tenant="other")
    r = await api.call("POST", f"{PATH}/{sub_id}/heartbeat", other)
    assert r.status_code == 404
    assert (await api.call("DELETE", f"{PATH}/{sub_id}", other)).status_code == 404
    assert (await api.call("POST", f"{PATH}/{sub_id}/heartbeat", api.worker)).status_code == 200
    assert (await api.call("POST", f"{PATH}/nonsense/heartbeat", api.worker)).status_code == 404


async def test_validation_scope_and_event_types(api: Api) -> None:
    async def create(token: str, **body: object) -> httpx.Response:
        return await api.call(
            "POST", PATH, token, {"callbackUrl": "https://example.com/cb", **body}
        )

    async def refused(field: str, **body: object) -> None:
        r = await create(api.worker, **body)
        assert r.status_code == 400, r.text
        doc = r.json()
        assert doc["code"] == "validation_error" and doc["details"]["field"] == field
        assert doc["error"].startswith(f"{field}: ")

    await refused("callbackUrl", callbackUrl="ftp://example.com/x")
    await refused("callbackUrl", callbackUrl="https://" + "a" * 2050)
    await refused("callbackUrl", callbackUrl=None)
    await refused("deliveryMode", deliveryMode="broadcast")
    await refused("groupId", deliveryMode="group")  # no groupId, no workerGroup claim
    await refused("minIntervalSeconds", minIntervalSeconds=-1)
    await refused("ttlSeconds", ttlSeconds=10**9)
    await refused("eventTypes", eventTypes=["bad command!"])
    limited = worker_token(api.secret, events=["email", "sms"])
    r = await create(limited, eventTypes=["email"])
    assert r.status_code == 200 and r.json()["subscriptionId"].startswith("sub-")
    r = await create(limited, eventTypes=["email", "push"])
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden" and r.json()["details"] == {"eventTypes": ["push"]}
    r = await create(limited, eventTypes=["*"])
    assert r.status_code == 403 and r.json()["details"] == {"eventTypes": ["*"]}
    no_scope = worker_token(api.secret, scope="codeq:claim codeq:result")
    r = await create(no_scope)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert "codeq:subscribe" in r.json()["error"]
    r = await create(api.producer)
    assert r.status_code in (401, 403) and r.json()["code"] in ("unauthorized", "forbidden")
    # Nothing refused was stored: only the one subscription of the limited token.
    (only,) = await Subscriptions(api.ctx.store).active(escape_tenant("default"))
    assert only["eventTypes"] == ["email"]


async def test_worker_group_claim_is_the_default_group(api: Api) -> None:
    grouped = worker_token(api.secret, workerGroup="pool-a", events=["email"])
    r = await api.call("POST", PATH, grouped, {"callbackUrl": "https://example.com/cb"})
    assert r.status_code == 200
    r = await api.call(
        "POST", PATH, grouped, {"callbackUrl": "https://example.com/cb2", "deliveryMode": "fanout"}
    )
    assert r.status_code == 200
    subs = sorted(
        await Subscriptions(api.ctx.store).active(escape_tenant("default")),
        key=lambda s: s["callbackUrl"],
    )
    assert [(s["deliveryMode"], s["groupId"], s["eventTypes"]) for s in subs] == [
        ("group", "pool-a", ["email"]),
        ("fanout", "pool-a", ["email"]),
    ]


@pytest.fixture
async def capped(nursery: trio.Nursery, tmp_path: Path, redis_url: str) -> AsyncIterator[Api]:
    config = make_config(
        tmp_path, webhooks={"subscription_max_per_worker": 3, "subscription_max_per_tenant": 5}
    )
    async for api in start_api(nursery, config, redis_url):
        yield api


async def test_caps_per_worker_and_per_tenant_answer_429(capped: Api) -> None:
    api = capped

    async def create(token: str) -> httpx.Response:
        return await api.call(
            "POST", PATH, token, {"callbackUrl": "https://example.com/cb", "ttlSeconds": 600}
        )

    w1, w2 = worker_token(api.secret, sub="w-1"), worker_token(api.secret, sub="w-2")
    ids = []
    for _ in range(3):
        r = await create(w1)
        assert r.status_code == 200, r.text
        ids.append(r.json()["subscriptionId"])
    r = await create(w1)
    assert r.status_code == 429
    body = r.json()
    assert body["code"] == "subscription_limit"
    assert body["scope"] == "worker" and body["operation"] == "subscribe"
    assert body["details"] == {"limit": 3}
    assert "subscription_max_per_worker" in body["error"]
    # Retry-After: when the earliest of the worker's subscriptions expires (ttl 600 s).
    assert 590 <= body["retryAfterSeconds"] <= 600
    assert r.headers["Retry-After"] == str(body["retryAfterSeconds"])
    # Renewing is never refused; deleting frees a place.
    r = await api.call("POST", f"{PATH}/{ids[0]}/heartbeat", w1, {"ttlSeconds": 60})
    assert r.status_code == 200
    assert (await api.call("DELETE", f"{PATH}/{ids[1]}", w1)).status_code == 204
    assert (await create(w1)).status_code == 200
    # The tenant: 3 of w-1 + 2 of w-2 = 5, then w-2 is refused by the tenant's cap.
    assert (await create(w2)).status_code == 200
    assert (await create(w2)).status_code == 200
    r = await create(w2)
    assert r.status_code == 429
    assert r.json()["scope"] == "tenant" and r.json()["details"] == {"limit": 5}
    # Another tenant has its own count.
    other = worker_token(api.secret, sub="w-1", tenant="other")
    assert (await create(other)).status_code == 200
    live = await Subscriptions(api.ctx.store).active(escape_tenant("default"))
    assert len(live) == 5


async def test_cap_holds_under_concurrent_creates(capped: Api) -> None:
    api = capped
    token = worker_token(api.secret, sub="w-burst", tenant="burst")
    codes: list[int] = []

    async def create() -> None:
        r = await api.call("POST", PATH, token, {"callbackUrl": "https://example.com/cb"})
        codes.append(r.status_code)

    async with trio.open_nursery() as n:
        for _ in range(20):
            n.start_soon(create)
    assert sorted(codes) == [200] * 3 + [429] * 17
    assert len(await Subscriptions(api.ctx.store).active(escape_tenant("burst"))) == 3
