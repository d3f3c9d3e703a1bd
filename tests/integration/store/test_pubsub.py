"""Wake-ups over pub/sub from another process's store, on redis-server and KVRocks.

KVRocks sends published messages as ``*3`` arrays even on a RESP3 connection;
a subscriber reading only RESP3 pushes never sees them and every waiter falls
back to its deadline. Here the creating store is a second connection pool (as
another daemon would be), so only pub/sub can carry the hint.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trio
import trio.testing

from codeqd.store import HUB_HINTS, HUB_OWN, Store, WakeHub, connect
from codeqd.store._hints import QueueWork, Resync, TaskDone
from codeqd.store._subscriber import Endpoint, SubscriberError, subscribe
from tests.conftest import free_port
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
        assert hint.tasks == (("t", task["id"]),) and not hint.callback
        # A task with a result callback says so: the dispatcher looks at the outbox.
        await other.create("t", new("wake-me", webhook="http://127.0.0.1:9/hook"))
        task = (await other.claim("t", "w", ["wake-me"], 30))[0].meta
        await other.report("t", task["id"], "w", task["leaseId"], "COMPLETED", {}, None, [])
        with trio.fail_after(2):
            while not isinstance(hint := await box.get(), TaskDone):
                pass
        assert hint.tasks == (("t", task["id"]),) and hint.callback


async def test_a_create_in_this_process_wakes_one_parked_claim_not_two(
    nursery: trio.Nursery, store: Store
) -> None:
    """The create posts its hint here and publishes it; the hub takes one of the two.
    With both, the pub/sub copy arrived after the woken waiter had the task and woke a
    second idle one to look at the store for nothing (one fruitless claim per task)."""
    hub = WakeHub()
    inbox = store.wakeups.inbox("ingress", HUB_HINTS, own=HUB_OWN)
    copies = store.wakeups.inbox("test", (QueueWork, Resync), own="none")  # the copy only
    nursery.start_soon(hub.run, inbox)
    await nursery.start(store.wakeups.run)
    with trio.fail_after(5):
        await hub.connected.wait()
    with hub.claim_waiter("t", ["one"]) as first, hub.claim_waiter("t", ["one"]) as second:
        await store.create("t", new("one"))
        with trio.fail_after(5):  # the copy is in: the hub's inbox has it as well
            while not isinstance(hint := await copies.get(), QueueWork):
                pass
        assert hint.command == "one"
        await trio.testing.wait_all_tasks_blocked()  # the hub has applied what it got
        assert (first.event.is_set(), second.event.is_set()) == (True, False)


async def test_the_subscriber_authenticates_and_reads_messages(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path), "--user", "default", "off",
            "--user", "app", "on", ">p@ss", "~*", "&*", "+@all",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        endpoint = Endpoint.from_url(f"redis://app:p%40ss@127.0.0.1:{port}")
        assert (endpoint.username, endpoint.password) == ("app", "p@ss")
        with trio.fail_after(10):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    await stream.aclose()
                    break
                except OSError:
                    await trio.sleep(0.02)  # polls a child's readiness
            async with subscribe(endpoint, ["ch"]) as sub:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream:
                    await stream.send_all(b"AUTH app p@ss\r\nPUBLISH ch hello\r\n")
                    messages = sub.messages()
                    assert await messages.__anext__() == ("ch", "hello")
        wrong = Endpoint("127.0.0.1", port, None, "app", "nope")
        with pytest.raises(SubscriberError, match="refused"):
            async with subscribe(wrong, ["ch"]):
                pass
    finally:
        proc.terminate()
        proc.wait(10)
