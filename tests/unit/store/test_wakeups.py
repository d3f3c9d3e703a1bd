"""WakeHub without a store: who gets woken, in which order, pointed at which shard."""

from __future__ import annotations

from contextlib import ExitStack
from types import SimpleNamespace

import pytest
import trio

from codeqd.domain.errors import RateLimited
from codeqd.metrics import INBOX_DROPPED
from codeqd.store import (
    HUB_HINTS,
    Hint,
    Inbox,
    QueueWork,
    Resync,
    SubscriptionsChanged,
    TaskDone,
    WakeHub,
    Wakeups,
)
from codeqd.store._keys import Keys


def test_waiting_counts_each_parked_request_once() -> None:
    hub = WakeHub()
    with ExitStack() as outer:
        outer.enter_context(hub.parked(3, "claim"))
        outer.enter_context(hub.claim_waiter("t", ["a", "b"]))
        outer.enter_context(hub.parked(3, "result"))
        outer.enter_context(hub.done_waiter("t", "id1"))
        with hub.parked(3, "claim"), hub.claim_waiter("t", None):
            assert hub.waiting == 3
            # Claims and result waits count against one limit.
            with pytest.raises(RateLimited) as refused, hub.parked(3, "result"):
                pass
            assert refused.value.operation == "result"
        assert hub.waiting == 2
    assert hub.waiting == 0
    assert not hub._claim and not hub._done  # empty buckets are dropped


async def test_parked_lookups_share_the_slots_and_give_up_at_the_deadline() -> None:
    hub = WakeHub(check_slots=1)
    async with hub.check(trio.current_time() + 10) as first:
        assert first
        async with hub.check(trio.current_time() + 0.05) as second:
            assert not second  # the only slot is taken until the deadline passed
    async with hub.check(trio.current_time() + 1) as third:
        assert third  # free again


def test_queue_wake_up_wakes_the_oldest_idle_waiters_and_names_the_shard() -> None:
    hub = WakeHub()
    with ExitStack() as stack:
        named1 = stack.enter_context(hub.claim_waiter("t", ["q"]))
        wild = stack.enter_context(hub.claim_waiter("t", None))
        named2 = stack.enter_context(hub.claim_waiter("t", ["q", "r"]))
        other = stack.enter_context(hub.claim_waiter("u", ["q"]))
        hub.wake_queue("t|q", 2, shard=3)
        assert named1.event.is_set() and wild.event.is_set()
        assert not named2.event.is_set() and not other.event.is_set()
        assert named1.shards_to_check() == {3}
        hub.wake_queue("t|r", 5, shard=1)  # already-woken waiters are skipped
        assert named2.shards_to_check() == {1} and not other.event.is_set()


def wakeups(shards: int) -> Wakeups:
    return Wakeups(SimpleNamespace(keys=Keys("codeq", shards)))


async def feed(hub: WakeHub, hints: list[Hint]) -> None:
    """Run the hub over an inbox holding ``hints`` until it has applied them all."""
    box = Inbox("test", HUB_HINTS, 16)
    for hint in hints:
        assert box.offer(hint)
    box.close()
    await hub.run(box)


def test_messages_decode_to_hints_naming_their_shard() -> None:
    w = wakeups(4)
    assert w.decode("codeq:wake:2", "3:t|q") == [QueueWork("t", "q", 3, 2)]
    assert w.decode("codeq:wake", "1:t|q") == [QueueWork("t", "q", 1, None)]  # any shard
    # One hint per message (a script call), however many tasks it names.
    assert w.decode("codeq:done", "t|a\nu|b") == [TaskDone((("t", "a"), ("u", "b")))]
    # "|cb": a task's result callback is in the outbox.
    assert w.decode("codeq:done", "t|a|cb\nt|b") == [
        TaskDone((("t", "a"), ("t", "b")), callback=True)
    ]
    assert w.decode("codeq:done", "t|a") == [TaskDone((("t", "a"),), callback=False)]
    assert w.decode("codeq:subs", "t") == [SubscriptionsChanged("t")]


async def test_wake_up_without_a_shard_or_none_at_all_means_look_everywhere() -> None:
    hub = WakeHub()
    with (
        hub.claim_waiter("t", ["q"]) as a,
        hub.claim_waiter("t", ["q"]) as b,
        hub.claim_waiter("t", ["q"]) as idle,
    ):
        await feed(hub, [QueueWork("t", "q", 1, 2), QueueWork("t", "q", 1, None)])
        assert a.shards_to_check() == {2}
        assert b.event.is_set() and b.shards_to_check() is None
        assert not idle.event.is_set() and idle.shards_to_check() is None  # fallback poll


async def test_done_hints_wake_their_tasks_waiters() -> None:
    hub = WakeHub()
    with (
        hub.done_waiter("t", "a") as a,
        hub.done_waiter("t", "b") as b,
        hub.done_waiter("t", "c") as c,
    ):
        await feed(hub, wakeups(1).decode("codeq:done", "t|a\nt|b"))
        assert a.event.is_set() and b.event.is_set() and not c.event.is_set()


async def test_a_full_inbox_drops_and_counts_and_its_reader_resyncs() -> None:
    w = wakeups(1)
    box = w.inbox("test", HUB_HINTS, size=2)  # it starts with a Resync
    w.post(QueueWork("t", "q", 1, 0))
    w.post(QueueWork("t", "q", 1, 0))  # dropped: the inbox holds two
    dropped = INBOX_DROPPED.labels("test")._value.get()
    w.post(TaskDone((("t", "x"),)))
    assert INBOX_DROPPED.labels("test")._value.get() == dropped + 1
    # What was dropped may have mattered: the reader hears "re-check everything" first.
    assert await box.get() == Resync(False)
    assert [await box.get(), await box.get()] == [Resync(False), QueueWork("t", "q", 1, 0)]
    w.post(Resync(True))
    assert box.drain() == [Resync(True)]
    assert w.inbox("late", HUB_HINTS).drain() == [Resync(True)]  # a new inbox learns the state


async def test_hub_follows_the_subscription_state() -> None:
    hub = WakeHub()
    with hub.claim_waiter("t", ["q"]) as waiter:
        await feed(hub, [Resync(True)])
        assert hub.connected.is_set() and waiter.event.is_set()
    await feed(hub, [Resync(False)])
    assert not hub.connected.is_set()


def test_closed_hub_wakes_current_and_future_waiters() -> None:
    hub = WakeHub()
    with hub.claim_waiter("t", ["q"]) as before:
        hub.close()
        assert before.event.is_set()
        with hub.claim_waiter("t", ["q"]) as after:
            assert after.event.is_set() and after.shards_to_check() is None


async def test_waiters_poll_only_while_the_subscription_is_down() -> None:
    hub = WakeHub()
    now = trio.current_time()
    assert hub.wait_until(now + 30, 5) <= now + 5.01  # not subscribed yet: poll
    hub.connected.set()
    assert hub.wait_until(now + 30, 5) == now + 30  # subscribed: no message is lost
