"""Wake-ups over pub/sub from another process's store, on redis-server and KVRocks.

KVRocks sends published messages as ``*3`` arrays even on a RESP3 connection;
a subscriber reading only RESP3 pushes never sees them and every waiter falls
back to its deadline. Here the creating store is a second connection pool (as
another daemon would be), so only pub/sub can carry the hint.
"""

from __future__ import annotations

import trio

from codeqd.store import Store, connect
from codeqd.store._hints import QueueWork, Resync, TaskDone
from tests.integration.store.test_transitions import new


async def test_a_create_elsewhere_wakes_the_listener_at_once(
    nursery: trio.Nursery, store: Store, redis_url: str
) -> None:
    box = store.wakeups.inbox("test", (QueueWork, TaskDone, Resync))
    await nursery.start(store.wakeups.run)
    with trio.fail_after(5):
        while not store.wakeups.connected:
            await box.get()  # the listener's Resync(connected=True)
    async with connect(store.config, redis_url) as other:
        started = trio.current_time()
        await other.create("t", new("wake-me"))
        with trio.fail_after(2):  # a long-poll's deadline is 10-30 s; pub/sub is ~ms
            while True:
                hint = await box.get()
                if isinstance(hint, QueueWork):
                    break
        assert hint.command == "wake-me"
        assert hint.count == 1
        assert trio.current_time() - started < 1
        claimed = await other.claim("t", "w", ["wake-me"], 30)
        task = claimed[0].meta
        await other.report("t", task["id"], "w", task["leaseId"], "COMPLETED", {}, None, [])
        with trio.fail_after(2):
            while not isinstance(hint := await box.get(), TaskDone):
                pass
        assert hint.task_id == task["id"]
