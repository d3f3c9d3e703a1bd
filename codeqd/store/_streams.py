"""The registry of open worker streams, for the dashboard's workers page: each
stream's daemon process puts a short record (who, which commands, what it holds) with
a TTL and refreshes it; a reader lists a tenant's live ones (``stream_put.lua``,
``stream_delete.lua``).

Advisory, like a process list: no task state lives here, a record is at most a few
seconds old, and one whose daemon died expires by itself. Its keys share a hash tag
of their own (``{<prefix>:streams}``), apart from the task shards.
"""

from __future__ import annotations

from typing import Any

import orjson

from codeqd.store._keys import escape_tenant
from codeqd.store._store import Transitions, now_ms

#: Streams listed per tenant at most (the page says how many more there are).
LIST_LIMIT = 500


class StreamRegistry:
    def __init__(self, store: Transitions) -> None:
        self.store = store
        self.keys = store.keys.streams

    async def put(self, tenant: str, stream_id: str, record: dict[str, Any], ttl_ms: int) -> None:
        ten = escape_tenant(tenant)
        await self.store.run_script(
            "stream_put",
            [self.keys.record(ten, stream_id), self.keys.index(ten)],
            [stream_id, orjson.dumps(record), now_ms(), ttl_ms],
        )

    async def delete(self, tenant: str, stream_id: str) -> None:
        ten = escape_tenant(tenant)
        await self.store.run_script(
            "stream_delete",
            [self.keys.record(ten, stream_id), self.keys.index(ten)],
            [stream_id],
        )

    async def live(self, tenant: str, limit: int = LIST_LIMIT) -> tuple[list[dict[str, Any]], int]:
        """The tenant's live streams (oldest registration first, at most ``limit``) and
        how many there are: two reads, no script."""
        ten = escape_tenant(tenant)
        client, index = self.store.client, self.keys.index(ten)
        now = now_ms()
        ids = await self.store.command(
            client.zrangebyscore, index, now, "+inf", offset=0, count=limit
        )
        total = await self.store.command(client.zcount, index, now, "+inf")
        if not ids:
            return [], int(total)
        raws = await self.store.command(client.mget, [self.keys.record(ten, i) for i in ids])
        return [orjson.loads(r) for r in raws if r], int(total)
