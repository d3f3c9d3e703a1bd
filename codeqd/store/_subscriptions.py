"""Worker-availability subscriptions: stored with a TTL, listed per tenant, and the
atomic choice of whom to notify (``sub_put.lua``, ``sub_delete.lua``, ``sub_pick.lua``).

All their keys share one hash tag of their own (``{<prefix>:subs}``), apart from the
task shards. Changes are published on the subscriptions channel (the tenant) so a
notifier's cache of a tenant's subscriptions is dropped at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import orjson

from codeqd.domain.subscription import PickUnit, SubscriptionLimit
from codeqd.store._keys import escape_tenant
from codeqd.store._store import Transitions, now_ms

SUBSCRIPTION_ID_PREFIX = "sub-"


def new_subscription_id() -> str:
    return SUBSCRIPTION_ID_PREFIX + secrets.token_hex(12)


def is_subscription_id(value: str) -> bool:
    rest = value[len(SUBSCRIPTION_ID_PREFIX) :]
    return (
        value.startswith(SUBSCRIPTION_ID_PREFIX)
        and len(rest) == 24
        and all(c in "0123456789abcdef" for c in rest)
    )


class Subscriptions:
    def __init__(self, store: Transitions) -> None:
        self.store = store
        self.keys = store.keys.subs

    async def put(
        self,
        tenant: str,
        doc: dict[str, Any],
        ttl_ms: int,
        *,
        max_per_worker: int,
        max_per_tenant: int,
    ) -> dict[str, Any]:
        """Create (or replace) a subscription of ``doc["workerId"]``; ``doc`` gets
        ``ttlMs`` and ``expiresAt``. Raises ``SubscriptionLimit`` (429) when the worker
        or the tenant already has as many live subscriptions as allowed."""
        ten = escape_tenant(tenant)
        out = await self.store.run_script(
            "sub_put",
            [
                self.keys.sub(ten, doc["id"]),
                self.keys.index(ten),
                self.keys.worker_index(ten, doc["workerId"]),
            ],
            [
                doc["id"],
                orjson.dumps(doc),
                now_ms(),
                ttl_ms,
                self.store.keys.subs_channel,
                ten,
                max_per_worker,
                max_per_tenant,
            ],
        )
        if out[0] == "LIMIT":
            scope = str(out[1])
            most = max_per_worker if scope == "worker" else max_per_tenant
            raise SubscriptionLimit(scope, most, retry_after=int(out[2]) / 1000)
        return orjson.loads(out[1])  # type: ignore[no-any-return]

    async def _worker_of(self, ten: str, sub_id: str) -> str:
        """The stored subscription's worker ("" when it is gone): its worker index key
        must be named before the script runs. A subscription's worker never changes."""
        raw = await self.store.command(self.store.client.get, self.keys.sub(ten, sub_id))
        if not raw:
            return ""
        try:
            return str(orjson.loads(raw).get("workerId") or "")
        except (orjson.JSONDecodeError, AttributeError):
            return ""

    async def renew(self, tenant: str, sub_id: str, ttl_ms: int = 0) -> dict[str, Any] | None:
        """Extend by ``ttl_ms`` (0: the subscription's own TTL); None when it is gone."""
        if not is_subscription_id(sub_id):
            return None
        ten = escape_tenant(tenant)
        worker = await self._worker_of(ten, sub_id)
        out = await self.store.run_script(
            "sub_put",
            [self.keys.sub(ten, sub_id), self.keys.index(ten), self.keys.worker_index(ten, worker)],
            [sub_id, "", now_ms(), ttl_ms, self.store.keys.subs_channel, ten, 0, 0],
        )
        if out[0] != "OK":
            return None
        return orjson.loads(out[1])  # type: ignore[no-any-return]

    async def delete(self, tenant: str, sub_id: str) -> bool:
        if not is_subscription_id(sub_id):
            return False
        ten = escape_tenant(tenant)
        worker = await self._worker_of(ten, sub_id)
        existed = await self.store.run_script(
            "sub_delete",
            [
                self.keys.sub(ten, sub_id),
                self.keys.index(ten),
                self.keys.throttle(ten, sub_id),
                self.keys.worker_index(ten, worker),
            ],
            [sub_id, self.store.keys.subs_channel, ten],
        )
        return bool(existed)

    async def of_tenant(self, tenant: str) -> list[dict[str, Any]]:
        """The live subscriptions of ``tenant`` (for the dashboard)."""
        return await self.active(escape_tenant(tenant))

    async def active(self, ten: str) -> list[dict[str, Any]]:
        """The live subscriptions of an (escaped) tenant: two reads, no script."""
        client = self.store.client
        ids = await self.store.command(client.zrangebyscore, self.keys.index(ten), now_ms(), "+inf")
        if not ids:
            return []
        raws = await self.store.command(client.mget, [self.keys.sub(ten, i) for i in ids])
        return [orjson.loads(r) for r in raws if r]

    async def pick(
        self, ten: str, cmd: str, units: Sequence[PickUnit], window_ms: int
    ) -> list[str]:
        """Ids to notify now for an event of queue ``ten|cmd`` (see ``sub_pick.lua``)."""
        keys = [self.keys.event(ten, cmd)]
        plan = []
        for unit in units:
            rr = 0
            if unit.round_robin is not None:
                keys.append(self.keys.round_robin(ten, cmd, unit.round_robin))
                rr = len(keys)
            subs = []
            for sub in unit.subs:
                keys.append(self.keys.throttle(ten, sub["id"]))
                subs.append([sub["id"], len(keys), int(sub.get("minIntervalSeconds", 0) * 1000)])
            plan.append({"rr": rr, "subs": subs})
        if not plan:
            return []
        chosen = await self.store.run_script("sub_pick", keys, [window_ms, orjson.dumps(plan)])
        return list(chosen)

    async def ready_depth(self, ten: str, cmd: str) -> int:
        """Ready tasks of a queue across shards."""
        total = 0
        for k in self.store.keys.all():
            total += int(await self.store.command(self.store.client.zcard, k.ready(ten, cmd)))
        return total
