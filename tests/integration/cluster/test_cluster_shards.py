"""What only a sharded cluster can show: spread, the recorded shard count, and that a
woken long-poll looks only at the shard the wake-up named."""

from __future__ import annotations

import dataclasses
import re

import pytest
import trio

from codeqd.config import ConfigError
from codeqd.domain.ids import shard_of
from codeqd.store import Store, connect
from tests.integration.cluster.conftest import SHARDS, RedisClusterServers, _command
from tests.integration.conftest import Api
from tests.integration.store.test_transitions import new


async def test_tasks_spread_over_every_shard_and_several_nodes(
    store: Store, redis_cluster: RedisClusterServers
) -> None:
    ids = [(await store.create("t", new()))[0]["id"] for _ in range(2 * SHARDS)]
    assert {shard_of(i, SHARDS) for i in ids} == set(range(SHARDS))
    holding = [p for p in redis_cluster.ports if int(_command(p, "DBSIZE") or 0) > 0]
    assert len(holding) >= 2
    claimed = await store.claim("t", "w", ["c"], 30, max_tasks=2 * SHARDS)
    assert sorted(t.meta["id"] for t in claimed) == sorted(ids)


async def test_a_different_shard_count_is_refused(store: Store, redis_url: str) -> None:
    other = dataclasses.replace(
        store.config, store=dataclasses.replace(store.config.store, shards=2)
    )
    async with connect(other, redis_url) as s:
        with pytest.raises(ConfigError, match="initialised with 4 shards"):
            await s.init_keyspace()


def _script_calls(cluster: RedisClusterServers) -> int:
    total = 0
    for port in cluster.ports:
        stats = _command(port, "INFO", "commandstats")
        total += sum(int(n) for n in re.findall(r"cmdstat_evalsha?:calls=(\d+)", stats))
    return total


async def test_woken_long_poll_claims_from_the_named_shard_only(
    api: Api, redis_cluster: RedisClusterServers
) -> None:
    await api.create("warm", {})  # load the scripts on every node
    assert (await api.claim(commands=["warm"])).status_code == 200
    for port in redis_cluster.ports:
        _command(port, "CONFIG", "RESETSTAT")

    for _ in range(2 * SHARDS):  # a create lands on each shard in turn
        got: list[int] = []
        before = _script_calls(redis_cluster)

        async def waiter(got: list[int] = got) -> None:
            got.append((await api.claim(commands=["late"], waitSeconds=20)).status_code)

        async with trio.open_nursery() as n:
            n.start_soon(waiter)
            # Parked once the first look (one claim call per shard) is done.
            with trio.fail_after(10):
                while _script_calls(redis_cluster) < before + SHARDS:
                    await trio.sleep(0.01)  # polls the nodes' command stats
            await api.create("late", {})
        assert got == [200]
        # The first look, the create, then one claim call: the shard the wake-up named.
        assert _script_calls(redis_cluster) == before + SHARDS + 2


async def test_store_cluster_flag_with_a_plain_url(
    store: Store, redis_cluster: RedisClusterServers
) -> None:
    url = f"redis://127.0.0.1:{redis_cluster.ports[1]}"  # one node is enough to find the rest
    flagged = dataclasses.replace(
        store.config, store=dataclasses.replace(store.config.store, cluster=True)
    )
    async with connect(flagged, url) as s:
        assert type(s.client).__name__ == "RedisCluster"
        await s.init_keyspace()
        ids = {(await s.create("t", new()))[0]["id"] for _ in range(SHARDS)}
        claimed = await s.claim("t", "w", ["c"], 30, max_tasks=SHARDS)
        assert {t.meta["id"] for t in claimed} == ids
