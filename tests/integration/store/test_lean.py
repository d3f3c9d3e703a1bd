"""The lean script client (``codeqd.store._lean``) on Redis and KVRocks: a call cut off
part-way never leaves its reply for the next call, NOSCRIPT loads and calls again,
script errors and credentials behave as through coredis."""

from __future__ import annotations

import contextlib
from pathlib import Path

import coredis.exceptions as cx
import pytest
import trio

from codeqd.domain.errors import StoreUnavailable
from codeqd.store import Store, connect
from tests.conftest import RedisServer
from tests.integration.conftest import make_config

#: Busy for ARGV[1] microseconds of the store's clock, then answers ARGV[2].
SLOW = """
local t0 = redis.call('TIME')
local start = tonumber(t0[1]) * 1000000 + tonumber(t0[2])
repeat
  local t = redis.call('TIME')
until tonumber(t[1]) * 1000000 + tonumber(t[2]) - start > tonumber(ARGV[1])
return ARGV[2]
"""
ECHO = "return ARGV[1]"


async def test_scripts_go_through_the_lean_client(store: Store) -> None:
    assert store.lean is not None
    await store.queue_stats("t", "c")
    assert store.lean._idle, "the call left its connection for the next one"


async def test_a_call_cut_off_midway_does_not_leave_its_reply_for_the_next(
    store: Store,
) -> None:
    assert store.lean is not None
    await store.identify()
    multi = bool(store.kvrocks)
    slow = await store.client.script_load(SLOW)
    echo = await store.client.script_load(ECHO)
    assert await store.lean.evalsha(echo, [], ["warm"], multi=multi) == "warm"
    with trio.move_on_after(0.05) as cut:
        await store.lean.evalsha(slow, [], [300_000, "slow"], multi=multi)
    assert cut.cancelled_caught
    # The store still sends "slow" on the cut connection; the next call must not read it.
    for word in ("fast", "again"):
        assert await store.lean.evalsha(echo, [], [word], multi=multi) == word


async def test_noscript_loads_the_script_and_calls_again(store: Store) -> None:
    await store.queue_stats("t", "c")
    await store.client.script_flush()
    stats = await store.queue_stats("t", "c")
    assert (stats.ready, stats.dlq) == (0, 0)


async def test_an_error_the_script_raises_is_a_response_error(store: Store) -> None:
    assert store.lean is not None
    await store.identify()
    sha = await store.client.script_load("return redis.error_reply('boom: bad item')")
    with pytest.raises(cx.ResponseError, match="boom: bad item"):
        await store.lean.evalsha(sha, [], [], multi=bool(store.kvrocks))
    echo = await store.client.script_load(ECHO)
    assert await store.lean.evalsha(echo, [], ["ok"], multi=bool(store.kvrocks)) == "ok"


async def test_a_pipeline_answers_in_order_and_raises_an_error_reply(store: Store) -> None:
    """A task's reads (record, payload, result) are one write and one read; a missing
    field is None; an error reply is a ResponseError and the connection stays good."""
    assert store.lean is not None
    await store.client.hset("lean:h", {"a": "1", "b": "é"})
    replies = await store.lean.pipeline([("HGET", "lean:h", "a"), ("HGET", "lean:h", "x")])
    assert replies == ["1", None]
    assert await store.lean.command("HGET", "lean:h", "b") == "é"
    with pytest.raises(cx.ResponseError, match="WRONGTYPE"):
        await store.lean.pipeline([("HGET", "lean:h", "a"), ("GET", "lean:h")])
    assert await store.lean.command("HGET", "lean:h", "a") == "1"


async def test_credentials_from_the_url_are_used(
    store: Store, store_kind: str, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if store_kind != "redis":
        pytest.skip("KVRocks has no ACL users (requirepass only)")
    server: RedisServer = request.getfixturevalue("redis_server")
    assert server.command("ACL", "SETUSER", "lean", "on", ">s3cret", "~*", "&*", "+@all") == (
        b"+OK\r\n"
    )
    try:
        host = redis_url.removeprefix("redis://")
        async with connect(make_config(tmp_path), f"redis://lean:s3cret@{host}") as ok:
            await ok.init_keyspace()
            assert (await ok.queue_stats("t", "c")).ready == 0
        async with connect(make_config(tmp_path), f"redis://lean:wrong@{host}") as bad:
            assert bad.lean is not None
            with pytest.raises(cx.AuthenticationError):
                await bad.lean.evalsha("0" * 40, [], [], multi=False)
    finally:
        server.command("ACL", "DELUSER", "lean")


async def test_a_store_restart_costs_no_failed_call(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    try:
        async with connect(make_config(tmp_path), server.url) as store:
            await store.init_keyspace()
            await store.queue_stats("t", "c")
            assert store.lean is not None and len(store.lean._idle) == 1
            server.stop(kill=True)  # the idle connection is now closed by the store's end
            server.start()
            # The first call after the restart finds the dead connection before using it.
            assert (await store.queue_stats("t", "c")).ready == 0
    finally:
        server.stop()


async def test_a_store_that_says_not_now_is_unavailable_not_an_error(store: Store) -> None:
    """A reply like BUSY (a long script runs) or LOADING (the store reads its data after
    a restart) means the call did not run: 503, as for a lost connection, never 500."""
    await store.identify()
    if store.kvrocks:
        pytest.skip("KVRocks makes other calls wait for a running script, it never says BUSY")
    assert store.lean is not None
    await store.client.config_set({"busy-reply-threshold": 20})  # ms; default 5 s
    try:
        slow = await store.client.script_load(SLOW)
        async with trio.open_nursery() as n:
            # One connection runs a 1 s script; past 20 ms the store answers BUSY.
            n.start_soon(lambda: store.lean.evalsha(slow, [], [1_000_000, "slow"], multi=False))
            with trio.fail_after(5):
                while True:  # calls that reach the store before the script starts succeed
                    try:
                        await store.queue_stats("t", "c")
                    except StoreUnavailable as err:
                        assert "BUSY" in str(err.__cause__), err.__cause__
                        break
    finally:
        with contextlib.suppress(cx.ResponseError):  # NOTBUSY: the script has ended
            await store.client.script_kill()
        await store.client.config_set({"busy-reply-threshold": 5000})
    await store.queue_stats("t", "c")  # and all is well again
