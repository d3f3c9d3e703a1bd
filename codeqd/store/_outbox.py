"""The result-callback outbox: claim due entries with a lease, settle each attempt.

Terminal steps (``result.lua``, ``retry.lua`` when it dead-letters, ``cancel.lua``) put
``ten|cmd|id`` in the shard's outbox in the same atomic step; the dispatcher drains it
here. ``claim`` leases entries (``outbox_claim.lua``): their score becomes the lease
deadline, so an entry whose sender died is due again when the lease runs out
(at-least-once), and every claim hands out a new attempt number, so two processes
never send the same attempt. ``settle`` (``outbox_settle.lua``) applies an attempt's
outcome only if no later claim happened.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from codeqd.store._keys import field, split_member
from codeqd.store._store import Transitions

Outcome = Literal["delivered", "retry", "failed"]


@dataclass(frozen=True, eq=False)  # hashed by identity: a limiter borrower
class OutboxEntry:
    shard: int
    member: str
    attempt: int
    meta: dict[str, Any]
    result: dict[str, Any] | None

    @property
    def tenant_key(self) -> str:
        return self.member.split("|", 1)[0]

    @property
    def task_id(self) -> str:
        return split_member(self.member)[2]


def _decode(member: str, meta: str, result: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The entry's task and result; a record we cannot read (cjson accepted it, orjson
    does not) becomes a stand-in without a webhook, so its attempts fail and it ends
    ``FAILED`` instead of failing every claim."""
    _, cmd, task_id = split_member(member)
    try:
        return orjson.loads(meta), orjson.loads(result) if result else None
    except orjson.JSONDecodeError:
        return {"id": task_id, "command": cmd, "status": "FAILED"}, None


class Outbox:
    #: How often a claim reads each outbox from -inf instead of from its low-water mark
    #: (``outbox_add`` in ``lua/_lib.lua``): an entry that a writer left below the mark
    #: (a codeqd from before the mark, still running during a rolling upgrade) is sent
    #: within this long, never stranded. Each process sweeps at its first claim too.
    SWEEP_SECONDS = 60.0

    def __init__(self, store: Transitions) -> None:
        self.store = store
        self._swept = -math.inf

    async def claim(
        self, now_ms: int, lease_ms: int, limit: int
    ) -> tuple[list[OutboxEntry], int | None]:
        """Lease up to ``limit`` due entries across shards (one script call per shard).

        Returns the entries and the earliest score left in any outbox (the next time
        something may be due, a lease deadline included), or None when all are empty.
        Cancellation: a cancelled call may have leased entries; they are sent after
        their lease runs out.
        """
        out: list[OutboxEntry] = []
        next_due: int | None = None
        started = time.monotonic()
        sweep = started - self._swept >= self.SWEEP_SECONDS
        if sweep:
            self._swept = started
        for s, k in enumerate(self.store.keys.all()):
            if len(out) >= limit:
                break
            raw, head = await self.store.run_script(
                "outbox_claim",
                [k.outbox, k.outbox_attempts, k.task, k.result],
                [now_ms, lease_ms, limit - len(out), 1 if sweep else 0],
            )
            for member, attempt, meta, result in raw:
                out.append(OutboxEntry(s, member, int(attempt), *_decode(member, meta, result)))
            if head:
                due = int(float(head))
                next_due = due if next_due is None else min(next_due, due)
        return out, next_due

    async def settle(
        self,
        entry: OutboxEntry,
        outcome: Outcome,
        *,
        now_ms: int,
        retry_at_ms: int = 0,
        error: str = "",
        http_status: int | None = None,
    ) -> bool:
        """Record the attempt's outcome (and its HTTP status, None: no response, in the
        task's ``callback`` event); False when a later attempt superseded it."""
        k = self.store.keys.shard(entry.shard)
        ten, _, task_id = split_member(entry.member)
        res = await self.store.run_script(
            "outbox_settle",
            [k.outbox, k.outbox_attempts, k.task],
            [
                entry.member,
                entry.attempt,
                outcome,
                retry_at_ms,
                error[:1000],
                field(ten, task_id),
                now_ms,
                http_status or 0,
            ],
        )
        return res == "OK"  # type: ignore[no-any-return]

    async def pending(self) -> int:
        """Entries waiting or being sent, across shards (for tests and stats)."""
        total = 0
        for k in self.store.keys.all():
            total += int(await self.store.command(self.store.client.zcard, k.outbox))
        return total

    async def members(self) -> Sequence[str]:
        found: list[str] = []
        for k in self.store.keys.all():
            found.extend(await self.store.command(self.store.client.zrange, k.outbox, 0, -1))
        return found
