"""The cluster lifecycle suite on a 3-node KVRocks cluster with 4 shards.

The same test bodies as ``test_cluster_lifecycle.py``; this module's ``redis_url``
is the KVRocks cluster. KVRocks has no cluster bus (a PUBLISH reaches only its own
node), so wake-ups are read from every primary; the last test checks that a
create on each shard wakes a listener in another process at once.
"""

from __future__ import annotations

import pytest
import trio

from codeqd.domain.ids import shard_of
from codeqd.store import Store, connect
from codeqd.store._hints import QueueWork, Resync
from tests.integration.cluster.conftest import SHARDS, KvrocksClusterServers
from tests.integration.cluster.test_cluster_lifecycle import *  # noqa: F403
from tests.integration.store.test_transitions import new


@pytest.fixture
def redis_url(kvrocks_cluster: KvrocksClusterServers) -> str:
    kvrocks_cluster.flush()
    return kvrocks_cluster.url


async def test_wakeups_arrive_from_every_node(
    nursery: trio.Nursery, store: Store, redis_url: str, kvrocks_cluster: KvrocksClusterServers
) -> None:
    box = store.wakeups.inbox("test", (QueueWork, Resync))
    await nursery.start(store.wakeups.run)
    with trio.fail_after(5):
        while not store.wakeups.connected:
            await box.get()
    async with connect(store.config, redis_url) as other:
        shards: set[int] = set()
        holding: set[int] = set()
        while len(shards) < SHARDS:
            meta = (await other.create("t", new("spread")))[0]
            shards.add(shard_of(meta["id"], SHARDS))
            with trio.fail_after(2):
                while not isinstance(hint := await box.get(), QueueWork):
                    pass
            assert hint.shard == shard_of(meta["id"], SHARDS)
        for server in kvrocks_cluster.servers:
            if not server.command("RANDOMKEY").startswith(b"$-1"):  # DBSIZE is lazy there
                holding.add(server.port)
        assert len(holding) >= 2  # the shards live on several nodes
