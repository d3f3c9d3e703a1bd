"""Subscription routes: create, heartbeat, delete; validation, scopes and tenancy."""

from __future__ import annotations

from datetime import datetime

from codeqd.store._keys import escape_tenant
from codeqd.store._subscriptions import Subscriptions
from tests.integration.conftest import Api
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
    async def create(token: str, **body: object) -> int:
        r = await api.call("POST", PATH, token, {"callbackUrl": "https://example.com/cb", **body})
        return r.status_code

    assert await create(api.worker, callbackUrl="ftp://example.com/x") == 400
    assert await create(api.worker, callbackUrl="https://" + "a" * 2050) == 400
    assert await create(api.worker, callbackUrl=None) == 400
    assert await create(api.worker, deliveryMode="broadcast") == 400
    assert await create(api.worker, deliveryMode="group") == 400  # no groupId, no workerGroup
    assert await create(api.worker, minIntervalSeconds=-1) == 400
    assert await create(api.worker, ttlSeconds=10**9) == 400
    assert await create(api.worker, eventTypes=["bad command!"]) == 400
    limited = worker_token(api.secret, events=["email", "sms"])
    assert await create(limited, eventTypes=["email"]) == 200
    assert await create(limited, eventTypes=["email", "push"]) == 403
    assert await create(limited, eventTypes=["*"]) == 403
    no_scope = worker_token(api.secret, scope="codeq:claim codeq:result")
    assert await create(no_scope) == 403
    assert await create(api.producer) in (401, 403)


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
